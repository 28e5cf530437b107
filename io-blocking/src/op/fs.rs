//! Files: open, positional reads and writes, sync, length and metadata.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use io_core::op::read_into;
use io_core::{Handle, Metadata, OpenOptions};

use super::std_of;

pub(super) fn open(
    path: &Path,
    options: &OpenOptions,
    file: &mut Option<Handle>,
) -> io::Result<usize> {
    *file = Some(Handle::new(options.to_std().open(path)?));
    Ok(0)
}

pub(super) fn read_at(file: &Handle, buf: &mut Vec<u8>, offset: u64) -> io::Result<usize> {
    let file = std_of::<File>(file, "read_at")?;
    read_into(buf, |space| file.read_at(space, offset))
}

pub(super) fn write_at(file: &Handle, buf: &[u8], offset: u64) -> io::Result<usize> {
    std_of::<File>(file, "write_at")?.write_at(buf, offset)
}

pub(super) fn sync_all(file: &Handle) -> io::Result<usize> {
    std_of::<File>(file, "sync_all")?.sync_all().map(|()| 0)
}

pub(super) fn len(file: &Handle, len: &mut u64) -> io::Result<usize> {
    *len = std_of::<File>(file, "len")?.metadata()?.len();
    Ok(0)
}

pub(super) fn set_len(file: &Handle, len: u64) -> io::Result<usize> {
    std_of::<File>(file, "set_len")?.set_len(len).map(|()| 0)
}

pub(super) fn stat(file: &Handle, metadata: &mut Option<Metadata>) -> io::Result<usize> {
    *metadata = Some(Metadata::from_std(
        &std_of::<File>(file, "stat")?.metadata()?,
    ));
    Ok(0)
}
