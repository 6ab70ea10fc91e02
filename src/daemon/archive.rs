//! ACTION(DISCARD) ARCHIVE(path): append the whole message, in capture format, to a
//! file and flush it before the DLQ copy is acknowledged. Files stay open for the run.
//! A file that does not end with a newline (a write torn by a kill -9: Linux stops a
//! write to a file part-way on a fatal signal) gets one first, so a torn record never
//! runs into the next one; the message it was for was not acknowledged and is archived
//! again whole.

use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
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
                let f = open(path).map_err(|e| {
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

/// Open `path` for appending, ending a torn last line first.
fn open(path: &Path) -> std::io::Result<File> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .read(true)
        .open(path)?;
    if f.metadata()?.len() > 0 {
        let mut last = [0u8; 1];
        f.seek(SeekFrom::End(-1))?;
        f.read_exact(&mut last)?;
        if last[0] != b'\n' {
            f.write_all(b"\n")?;
        }
    }
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_torn_last_line_never_runs_into_the_next_record() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.jsonl");
        std::fs::write(&path, b"{\"whole\":1}\n{\"exchange\":\"\",\"rout").expect("write");
        let m = Message {
            body: b"b".to_vec(),
            ..Default::default()
        };
        Archives::default().write(&path, &m).expect("archive");
        let text = std::fs::read_to_string(&path).expect("read");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(lines[1], "{\"exchange\":\"\",\"rout");
        assert!(lines[2].starts_with('{') && text.ends_with('\n'), "{text}");
    }
}
