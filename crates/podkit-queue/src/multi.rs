//! `podkit worker multi`: chapter 10's multi-worker pattern, one worker made of several
//! reusable worker commands. Each `--step` runs in order on the same `WORK_ITEM_FILE`,
//! with `WORK_DIR` set to a directory the steps share to pass outputs on (removed after,
//! unless `--keep-work-dir`); the first step that fails fails the item with its status.

use std::path::PathBuf;
use std::process::{Command, ExitCode};

/// The flags of `podkit worker multi`.
#[derive(clap::Args, Debug, Clone)]
pub struct MultiArgs {
    /// A worker command, run by `/bin/sh -c`; give it once per step, in order.
    #[arg(
        long = "step",
        env = "PODKIT_STEPS",
        value_name = "COMMAND",
        value_delimiter = '\n',
        required = true
    )]
    pub steps: Vec<String>,
    /// Keep the shared work directory (its path is printed) instead of removing it.
    #[arg(long, env = "PODKIT_KEEP_WORK_DIR")]
    pub keep_work_dir: bool,
}

/// Runs the steps; the exit code is the first failing step's, or 0.
pub fn run(args: &MultiArgs) -> ExitCode {
    let Some(item_file) = std::env::var_os("WORK_ITEM_FILE").map(PathBuf::from) else {
        eprintln!("podkit: error: WORK_ITEM_FILE is not set: podkit worker multi runs as a work-queue worker");
        return ExitCode::from(2);
    };
    let work_dir = match tempfile_dir() {
        Ok(dir) => dir,
        Err(err) => {
            eprintln!("podkit: error: creating WORK_DIR: {err}");
            return ExitCode::FAILURE;
        }
    };
    let mut code = 0u8;
    for (i, step) in args.steps.iter().enumerate() {
        eprintln!(
            "podkit worker multi: step {}/{}: {step}",
            i + 1,
            args.steps.len()
        );
        let status = Command::new(crate::worker::SHELL)
            .arg("-c")
            .arg(step)
            .env("WORK_ITEM_FILE", &item_file)
            .env("WORK_DIR", &work_dir)
            .status();
        match status {
            Ok(status) if status.success() => continue,
            Ok(status) => {
                eprintln!("podkit worker multi: step {} failed: {status}", i + 1);
                code = status.code().map_or(1, |c| c.clamp(1, 255) as u8);
            }
            Err(err) => {
                eprintln!("podkit worker multi: step {} could not start: {err}", i + 1);
                code = 1;
            }
        }
        break;
    }
    if args.keep_work_dir {
        eprintln!(
            "podkit worker multi: WORK_DIR kept at {}",
            work_dir.display()
        );
    } else {
        let _ = std::fs::remove_dir_all(&work_dir);
    }
    ExitCode::from(code)
}

fn tempfile_dir() -> std::io::Result<PathBuf> {
    let base = std::env::temp_dir();
    for attempt in 0..100u32 {
        let dir = base.join(format!("podkit-work-{}-{attempt}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(err) if err.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(err) => return Err(err),
        }
    }
    Err(std::io::Error::other("no free directory name"))
}
