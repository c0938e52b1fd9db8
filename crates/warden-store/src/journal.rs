//! A journal: one append-only file of entries kept on disk while Postgres is away, for what
//! is not a signal (an operator's command, an audit line) but must not be lost either.
//!
//! Entries are framed as the spool's records are (`[len][CRC-32C][JSON]`) and fsynced per
//! append, so an entry is durable once [`Journal::append`] returns. Its owner clears the file
//! once everything in it is committed; whatever is still there on open (the process died
//! first) is handed back to be applied again, and the owner recognises what had already been
//! committed. A torn entry at the end (the process died inside an append, before anyone was
//! answered) is cut; from a corrupt entry on, the rest is moved aside to `<file>.<offset>.corrupt`
//! (kept, logged, counted by the caller through [`Opened::corrupt`]).

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::spool::{SpoolError, Tail, cut, frame_json, io_at, parse_json, sync_dir};

/// An open journal of `T`.
#[derive(Debug)]
pub struct Journal<T> {
    path: PathBuf,
    file: File,
    /// Entries in the file.
    len: usize,
    _entries: PhantomData<fn(T) -> T>,
}

/// What [`Journal::open`] found.
#[derive(Debug)]
pub struct Opened<T> {
    pub journal: Journal<T>,
    /// The entries left by an earlier process, oldest first.
    pub entries: Vec<T>,
    /// Whether a corrupt entry was found (the rest of the file is kept aside).
    pub corrupt: bool,
}

impl<T: Serialize + DeserializeOwned> Journal<T> {
    /// Opens (creating, with its directory) the journal at `path`, reading back its entries.
    pub fn open(path: &Path) -> Result<Opened<T>, SpoolError> {
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        fs::create_dir_all(dir).map_err(io_at(dir))?;
        let bytes = match fs::read(path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_at(path)(e)),
        };
        let (entries, tail) = parse_json::<T>(&bytes, 0);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(io_at(path))?;
        sync_dir(dir)?;
        let mut corrupt = false;
        match tail {
            Tail::Clean => {}
            Tail::Torn { at } => {
                tracing::warn!(journal = %path.display(), at, "journal: cutting a torn entry at the end (never answered)");
                cut(path, at)?;
            }
            Tail::Corrupt { at, why } => {
                let mut aside = path.as_os_str().to_owned();
                aside.push(format!(".{at}.corrupt"));
                let aside = PathBuf::from(aside);
                let rest = bytes.get(usize::try_from(at).unwrap_or(usize::MAX)..);
                fs::write(&aside, rest.unwrap_or_default()).map_err(io_at(&aside))?;
                cut(path, at)?;
                corrupt = true;
                tracing::error!(journal = %path.display(), at, %why, kept = %aside.display(), "journal: corrupt entry; the rest is kept aside");
            }
        }
        let entries: Vec<T> = entries.into_iter().map(|(e, _)| e).collect();
        Ok(Opened {
            journal: Journal {
                path: path.to_owned(),
                file,
                len: entries.len(),
                _entries: PhantomData,
            },
            entries,
            corrupt,
        })
    }

    /// Appends `entries` and fsyncs them: when this returns Ok, every one is durable.
    pub fn append(&mut self, entries: &[T]) -> Result<(), SpoolError> {
        if entries.is_empty() {
            return Ok(());
        }
        let end = self.file.metadata().map_err(io_at(&self.path))?.len();
        let mut all = Vec::new();
        for e in entries {
            all.extend_from_slice(&frame_json(e));
        }
        if let Err(e) = self
            .file
            .write_all(&all)
            .and_then(|()| self.file.sync_data())
        {
            // What was written is unknown: cut back so the next append does not follow a
            // torn entry.
            let _ = cut(&self.path, end);
            return Err(io_at(&self.path)(e));
        }
        self.len += entries.len();
        Ok(())
    }

    /// Entries in the file.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the file holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Empties the file, durably: everything in it is committed.
    pub fn clear(&mut self) -> Result<(), SpoolError> {
        self.file
            .set_len(0)
            .and_then(|()| self.file.sync_all())
            .map_err(io_at(&self.path))?;
        self.len = 0;
        Ok(())
    }

    /// Where it is.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize)]
    struct Entry {
        n: u32,
        text: String,
    }

    fn entry(n: u32) -> Entry {
        Entry {
            n,
            text: format!("note {n}"),
        }
    }

    #[test]
    fn entries_survive_a_reopen_until_cleared() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join("commands.journal");
        let mut j = Journal::<Entry>::open(&path).expect("open").journal;
        j.append(&[entry(1), entry(2)]).expect("append");
        j.append(&[entry(3)]).expect("append");
        drop(j);
        let opened = Journal::<Entry>::open(&path).expect("reopen");
        assert_eq!(opened.entries, vec![entry(1), entry(2), entry(3)]);
        assert!(!opened.corrupt);
        let mut j = opened.journal;
        assert_eq!(j.len(), 3);
        j.clear().expect("clear");
        j.append(&[entry(4)]).expect("append after clear");
        drop(j);
        let opened = Journal::<Entry>::open(&path).expect("reopen");
        assert_eq!(opened.entries, vec![entry(4)]);
    }

    #[test]
    fn a_torn_tail_is_cut_and_a_corrupt_entry_is_kept_aside() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("j");
        let mut j = Journal::<Entry>::open(&path).expect("open").journal;
        j.append(&[entry(1), entry(2)]).expect("append");
        drop(j);
        let whole = fs::read(&path).expect("read");
        // Torn: half of a third entry.
        let third = frame_json(&entry(3));
        let mut torn = whole.clone();
        torn.extend_from_slice(&third[..third.len() / 2]);
        fs::write(&path, &torn).expect("write");
        let opened = Journal::<Entry>::open(&path).expect("reopen torn");
        assert_eq!(opened.entries, vec![entry(1), entry(2)]);
        assert!(!opened.corrupt);
        drop(opened);
        assert_eq!(
            fs::read(&path).expect("read"),
            whole,
            "the torn entry is cut"
        );
        // Corrupt: flip a byte inside the second entry's body.
        let mut bad = whole.clone();
        let last = bad.len() - 3;
        bad[last] ^= 0xff;
        fs::write(&path, &bad).expect("write");
        let opened = Journal::<Entry>::open(&path).expect("reopen corrupt");
        assert_eq!(opened.entries, vec![entry(1)]);
        assert!(opened.corrupt);
        let aside: Vec<_> = fs::read_dir(dir.path())
            .expect("dir")
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().ends_with(".corrupt"))
            .collect();
        assert_eq!(aside.len(), 1, "the corrupt rest is kept");
    }
}
