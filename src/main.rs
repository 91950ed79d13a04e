fn main() {
    // Allocator thresholds that matter for training steps on these machines
    // (see nasflow_ops::tune_malloc); set by nasflow itself, not the user.
    nasflow_ops::tune_malloc();
    std::process::exit(nasflow::cli::main());
}
