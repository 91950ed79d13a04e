//! The corpus of bad pipeline files: each tests/bad/NAME.yaml must fail
//! validation with exit code 2 and the message in NAME.expected (every line
//! of it, in order), and never panic. A first-line comment `# args: ...`
//! adds command-line arguments.

use std::path::Path;
use std::process::Command;

#[test]
fn every_bad_file_gives_its_message() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/bad");
    let mut files: Vec<_> = std::fs::read_dir(&dir).unwrap().flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "yaml")).collect();
    files.sort();
    assert!(files.len() >= 25, "the corpus has {} files", files.len());
    let mut failures = Vec::new();
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let expected = std::fs::read_to_string(f.with_extension("expected")).unwrap_or_else(|_| panic!("{name} has no .expected file"));
        let text = std::fs::read_to_string(f).unwrap();
        let mut args = vec!["dag".to_string(), name.clone()];
        if let Some(rest) = text.lines().next().and_then(|l| l.strip_prefix("# args: ")) {
            args.extend(rest.split_whitespace().map(String::from));
        }
        let out = Command::new(env!("CARGO_BIN_EXE_nasflow")).args(&args).current_dir(&dir).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let mut at = 0;
        let mut ok = out.status.code() == Some(2) && !stderr.contains("panicked");
        for line in expected.lines().filter(|l| !l.trim().is_empty()) {
            match stderr[at..].find(line) {
                Some(i) => at += i + line.len(),
                None => ok = false,
            }
        }
        if !ok {
            failures.push(format!("{name}: exit {:?}\n--- expected ---\n{expected}--- got ---\n{stderr}", out.status.code()));
        }
    }
    assert!(failures.is_empty(), "{} of {} bad files did not give their message:\n\n{}", failures.len(), files.len(), failures.join("\n"));
}
