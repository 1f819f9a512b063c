//! Writing the layers and descriptors of images cocoon builds itself
//! (`cocoon convert`, `cocoon infer image`): deterministic tar entries
//! (root-owned, mtime 0), so the same inputs give the same layer digests.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use crate::digest::HashingReader;
use crate::Digest;

/// An OCI descriptor of `size` bytes with `digest` and `media_type`.
pub fn descriptor(
    media_type: &str,
    digest: Digest,
    size: u64,
) -> Result<oci_spec::image::Descriptor, oci_spec::OciSpecError> {
    oci_spec::image::DescriptorBuilder::default()
        .media_type(media_type)
        .digest(oci_spec::image::Digest::from(digest))
        .size(size)
        .build()
}

/// The SHA-256 and size of the file at `path`.
pub fn hash_file(path: &Path) -> io::Result<(Digest, u64)> {
    let f = File::open(path)?;
    let mut h = HashingReader::new(io::BufReader::with_capacity(1 << 20, f));
    io::copy(&mut h, &mut io::sink())?;
    Ok(h.finish())
}

/// A deterministic tar header: root-owned, mtime 0.
fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h.set_size(size);
    h
}

/// The two zero blocks that end a tar archive.
pub const END_OF_ARCHIVE: [u8; 1024] = [0; 1024];

/// The 512-byte header [`append_file`] writes before a regular file's data,
/// for callers that write the data themselves (streamed, or in place),
/// followed by [`padding`] zero bytes.
pub fn file_header(path: &str, mode: u32, size: u64) -> io::Result<[u8; 512]> {
    let mut h = header(tar::EntryType::Regular, mode, size);
    h.set_path(path)?;
    h.set_cksum();
    Ok(*h.as_bytes())
}

/// How many zero bytes follow `size` bytes of entry data, to a whole block.
pub fn padding(size: u64) -> usize {
    ((512 - size % 512) % 512) as usize
}

/// Tar entries built in memory by `build`, without the end-of-archive
/// marker: the start of a layer whose later entries are written apart.
pub fn entries(
    build: impl FnOnce(&mut tar::Builder<Vec<u8>>) -> io::Result<()>,
) -> io::Result<Vec<u8>> {
    let mut b = tar::Builder::new(Vec::new());
    build(&mut b)?;
    let mut bytes = b.into_inner()?;
    // `into_inner` ends the archive: take the marker off again.
    bytes.truncate(bytes.len() - END_OF_ARCHIVE.len());
    Ok(bytes)
}

/// Appends directory `path` (mode 0755).
pub fn append_dir<W: Write>(b: &mut tar::Builder<W>, path: &str) -> io::Result<()> {
    let mut h = header(tar::EntryType::Directory, 0o755, 0);
    b.append_data(&mut h, path, io::empty())
}

/// Appends regular file `path` of `size` bytes read from `data`.
pub fn append_file<W: Write>(
    b: &mut tar::Builder<W>,
    path: &str,
    mode: u32,
    size: u64,
    data: impl Read,
) -> io::Result<()> {
    let mut h = header(tar::EntryType::Regular, mode, size);
    b.append_data(&mut h, path, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layer_written_in_pieces_is_the_layer_the_builder_writes() {
        let data = vec![7u8; 1000];
        let mut b = tar::Builder::new(Vec::new());
        append_dir(&mut b, "d").unwrap();
        append_file(&mut b, "d/f", 0o444, 1000, &data[..]).unwrap();
        append_file(&mut b, "d/g", 0o444, 2, &b"hi"[..]).unwrap();
        let whole = b.into_inner().unwrap();

        let mut pieces = entries(|b| append_dir(b, "d")).unwrap();
        pieces.extend_from_slice(&file_header("d/f", 0o444, 1000).unwrap());
        pieces.extend_from_slice(&data);
        pieces.resize(pieces.len() + padding(1000), 0);
        let mut tail = tar::Builder::new(Vec::new());
        append_file(&mut tail, "d/g", 0o444, 2, &b"hi"[..]).unwrap();
        pieces.extend_from_slice(&tail.into_inner().unwrap());
        assert_eq!(pieces, whole);
        assert_eq!(whole[whole.len() - END_OF_ARCHIVE.len()..], END_OF_ARCHIVE);
    }

    #[test]
    fn entries_are_deterministic_and_root_owned() {
        let layer = |data: &[u8]| {
            let mut b = tar::Builder::new(Vec::new());
            append_dir(&mut b, "bin").unwrap();
            append_file(&mut b, "bin/x", 0o555, data.len() as u64, data).unwrap();
            b.into_inner().unwrap()
        };
        assert_eq!(layer(b"abc"), layer(b"abc"));
        assert_ne!(layer(b"abc"), layer(b"abd"));
        let bytes = layer(b"abc");
        let mut a = tar::Archive::new(&bytes[..]);
        for e in a.entries().unwrap() {
            let h = e.unwrap().header().clone();
            assert_eq!(
                (h.uid().unwrap(), h.gid().unwrap(), h.mtime().unwrap()),
                (0, 0, 0)
            );
        }
    }
}
