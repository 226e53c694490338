//! Writing an [`ImageTree`] as squashfs (backhand), deterministically, and
//! reading one back.
//!
//! Fixed for every image: squashfs 4.0 little-endian, zstd (level 3, the
//! library default, no options block), 128 KiB blocks, owner and group 0,
//! every inode's mtime and the superblock's time set to the image's
//! `issued` time, directories 0755, padding to 4 KiB, duplicate-file
//! detection on. Files and directories are pushed in sorted order.
//! Debian's `unsquashfs` (squashfs-tools) reads the result (tested).
//!
//! [`read`] parses with backhand; it is meant for bytes whose signature
//! was already checked (see `image::signed`), and it still enforces the
//! size limits and refuses anything but directories and regular files.

use std::io::{Cursor, Read};

use backhand::compression::Compressor;
use backhand::{FilesystemCompressor, FilesystemReader, FilesystemWriter, InnerNode, NodeHeader};

use super::contents::ImageTree;
use super::{MAX_FILE_BYTES, MAX_IMAGE_BYTES};
use crate::error::{Error, Result};

/// Padding at the end of the image, in KiB (squashfs-tools pads to 4 KiB too).
const PAD_KIB: u32 = 4;

fn bad(reason: impl Into<String>) -> Error {
    Error::BadImage {
        reason: reason.into(),
    }
}

/// Writes `tree` as a squashfs image whose every time is `mtime` (Unix
/// seconds). Equal trees and times give equal bytes.
///
/// # Errors
/// [`Error::Build`] when backhand fails, [`Error::BadImage`] when the
/// result exceeds [`MAX_IMAGE_BYTES`].
pub fn write(tree: &ImageTree, mtime: u32) -> Result<Vec<u8>> {
    let mut fs = FilesystemWriter::default();
    fs.set_time(mtime);
    fs.set_only_root_id();
    fs.set_root_mode(0o755);
    fs.set_root_uid(0);
    fs.set_root_gid(0);
    fs.set_kib_padding(PAD_KIB);
    fs.set_emit_compression_options(false);
    fs.set_compressor(
        FilesystemCompressor::new(Compressor::Zstd, None)
            .map_err(|e| Error::build("squashfs compressor", e))?,
    );
    for dir in tree.dirs() {
        fs.push_dir(&dir, NodeHeader::new(0o755, 0, 0, mtime))
            .map_err(|e| Error::build("squashfs directory", e))?;
    }
    for (path, file) in tree.files() {
        fs.push_file(
            Cursor::new(file.bytes.as_slice()),
            path,
            NodeHeader::new(file.mode, 0, 0, mtime),
        )
        .map_err(|e| Error::build("squashfs file", e))?;
    }
    let mut out = Cursor::new(Vec::new());
    fs.write(&mut out)
        .map_err(|e| Error::build("squashfs image", e))?;
    let out = out.into_inner();
    if out.len() > MAX_IMAGE_BYTES {
        return Err(bad(format!(
            "the image would be {} bytes; at most {MAX_IMAGE_BYTES}",
            out.len()
        )));
    }
    Ok(out)
}

/// Reads a squashfs image into a tree (paths relative, without the leading
/// `/`). Checks sizes before reading file data.
///
/// # Errors
/// [`Error::BadImage`]: not squashfs, a node other than a directory or a
/// regular file, a path the tree refuses, a limit exceeded.
pub fn read(bytes: &[u8]) -> Result<ImageTree> {
    if bytes.len() > MAX_IMAGE_BYTES {
        return Err(bad(format!(
            "{} bytes; at most {MAX_IMAGE_BYTES}",
            bytes.len()
        )));
    }
    let fs = FilesystemReader::from_reader(Cursor::new(bytes))
        .map_err(|e| bad(format!("not a readable squashfs image ({e})")))?;
    let mut tree = ImageTree::default();
    let mut total = 0usize;
    for node in fs.files() {
        let path = node.fullpath.to_string_lossy();
        let rel = path.trim_start_matches('/');
        match &node.inner {
            InnerNode::Dir(_) => {}
            InnerNode::File(f) => {
                let len = f.file_len();
                total = total.saturating_add(len);
                if len > MAX_FILE_BYTES || total > MAX_IMAGE_BYTES {
                    return Err(bad(format!("/{rel}: {len} bytes exceeds the limits")));
                }
                let mut data = Vec::with_capacity(len);
                fs.file(f)
                    .reader()
                    .take(MAX_FILE_BYTES as u64 + 1)
                    .read_to_end(&mut data)
                    .map_err(|e| bad(format!("/{rel}: cannot be read ({e})")))?;
                if data.len() != len {
                    return Err(bad(format!(
                        "/{rel}: {} bytes read, {len} declared",
                        data.len()
                    )));
                }
                tree.insert(rel, node.header.permissions, data)?;
            }
            _ => {
                return Err(bad(format!("/{rel} is not a regular file or a directory")));
            }
        }
    }
    Ok(tree)
}
