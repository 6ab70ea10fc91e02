//! ACTION(DISCARD) ARCHIVE(path): append the whole message, in capture format, to a
//! file and flush it before the DLQ copy is acknowledged. Files stay open for the run.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use crate::capture;
use crate::failure::{ActionFailure, Cause};
use crate::message::Message;

/// The archive files opened so far.
#[derive(Default)]
pub struct Archives {
    files: HashMap<PathBuf, File>,
}

impl Archives {
    /// Append `message` to the archive at `path` (opened, or created, on first use).
    pub fn write(&mut self, path: &Path, message: &Message) -> Result<(), ActionFailure> {
        let file = match self.files.get_mut(path) {
            Some(f) => f,
            None => {
                let f = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .map_err(|e| {
                        ActionFailure::new(
                            Cause::ArchiveIo,
                            format!("cannot open archive {}: {e}", path.display()),
                        )
                    })?;
                self.files.entry(path.to_path_buf()).or_insert(f)
            }
        };
        let mut line = capture::to_line(message);
        line.push('\n');
        file.write_all(line.as_bytes())
            .and_then(|()| file.flush())
            .map_err(|e| {
                ActionFailure::new(
                    Cause::ArchiveIo,
                    format!("cannot write archive {}: {e}", path.display()),
                )
            })
    }
}
