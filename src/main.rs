fn main() {
    nasflow::tune_allocator();
    std::process::exit(nasflow::cli::main());
}
