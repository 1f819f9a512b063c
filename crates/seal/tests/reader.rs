//! The reader against blobs made by the writer: random access, and refusal
//! of tampering that slips past the signature layer (for example an attacker
//! who could re-sign the trailer): GCM tags bound to the chunk position, the
//! index bound to the table and to the tree digest.

use std::collections::BTreeMap;
use std::fs;

use cocoon_image::store::ContentStore;
use cocoon_image::{Digest, Entry, EntryKind, Tree};
use cocoon_seal::format::{BlobDigest, ChunkRecord, Trailer, TABLE_RECORD_LEN, TRAILER_LEN};
use cocoon_seal::manifest::{
    PlatformSpec, RuntimeConfig, SealParams, TreeRecords, SCHEMA, SEAL_FORMAT,
};
use cocoon_seal::pack::ChunkStore;
use cocoon_seal::reader::SealedBlob;
use cocoon_seal::writer::SealPlan;
use cocoon_seal::{Error, ImageKey, WorkloadManifest};
use sha2::{Digest as _, Sha256};

struct Sealed {
    dir: tempfile::TempDir,
    manifest: WorkloadManifest,
    key: ImageKey,
    trailer: Digest,
    big: Vec<u8>,
}

fn file(store: &mut ChunkStore, data: &[u8], inode: u64) -> Entry {
    let (digest, size) = store.put(&mut &data[..]).unwrap();
    Entry {
        kind: EntryKind::File {
            size,
            digest,
            inode,
        },
        mode: 0o644,
        uid: 0,
        gid: 0,
        mtime: 1,
        xattrs: BTreeMap::new(),
    }
}

/// A tree with a 40 KiB encrypted file (10 chunks of 4 KiB), a plaintext
/// file, a hardlink and an empty file, sealed with 4 KiB chunks.
fn sealed(encrypted: &[&str]) -> Sealed {
    sealed_with(encrypted, 1250)
}

/// The same with a big file of `digests` x 32 bytes.
fn sealed_with(encrypted: &[&str], digests: u32) -> Sealed {
    let dir = tempfile::tempdir().unwrap();
    let mut store = ChunkStore::new(dir.path(), 4096).unwrap();
    // Incompressible, so every full chunk stores the same number of bytes.
    let big: Vec<u8> = (0..digests)
        .flat_map(|i| Digest::of(&i.to_le_bytes()).0)
        .collect();
    let mut tree = Tree::new();
    tree.insert("/data", Entry::implicit_dir());
    tree.insert("/data/big", file(&mut store, &big, 1));
    tree.insert("/data/link", file(&mut store, &big, 1));
    tree.insert("/etc", Entry::implicit_dir());
    tree.insert("/etc/motd", file(&mut store, b"hello, sealed world\n", 2));
    tree.insert("/etc/empty", file(&mut store, b"", 3));
    let records = TreeRecords::of(&tree).unwrap();
    let manifest = WorkloadManifest {
        schema: SCHEMA.into(),
        platform: PlatformSpec {
            os: "linux".into(),
            architecture: "amd64".into(),
        },
        config: RuntimeConfig::default(),
        tree: records.summary().clone(),
        seal: SealParams {
            format: SEAL_FORMAT.into(),
            chunk_size: 4096,
            encrypted: encrypted.iter().map(|s| s.to_string()).collect(),
            key: "kbs:///cocoon/image-key/test".into(),
        },
        secrets: vec![],
        shield: vec![],
        launcher: Digest([9; 32]),
    };
    let key = ImageKey::from_bytes(&[5u8; 32]).unwrap();
    let mut out = fs::File::create_new(dir.path().join("blob")).unwrap();
    let chunks = store.finish().unwrap();
    let plan = SealPlan::new(records, &chunks, &manifest, &key).unwrap();
    let mut hasher = Sha256::new();
    let summary = plan.write(chunks, &mut out, &mut hasher).unwrap();
    assert_eq!(out.metadata().unwrap().len(), plan.size());
    // The bytes fed to the hasher are the blob's, in order.
    let written = fs::read(dir.path().join("blob")).unwrap();
    assert_eq!(hasher.finalize()[..], Digest::of(&written).0);
    Sealed {
        dir,
        manifest,
        key,
        trailer: summary.trailer_digest,
        big,
    }
}

impl Sealed {
    fn path(&self) -> std::path::PathBuf {
        self.dir.path().join("blob")
    }

    fn open(&self) -> Result<cocoon_seal::reader::UnlockedTree, Error> {
        SealedBlob::open(&self.path(), &self.trailer)?.unlock(&self.key, &self.manifest)
    }

    /// Rewrites the blob with `f`, then fixes the table digest in the
    /// trailer as someone who could re-sign would, and takes the new
    /// trailer digest as the signed one.
    fn rewrite(&mut self, f: impl FnOnce(&mut Vec<u8>, &[ChunkRecord])) {
        let mut b = fs::read(self.path()).unwrap();
        let (_, t) = trailer_and_table(&b);
        f(&mut b, &t);
        let mut h = trailer_of(&b);
        h.table_digest = BlobDigest::of(&b[h.table_offset as usize..h.index_offset as usize]);
        let at = b.len() - TRAILER_LEN;
        b[at..].copy_from_slice(&h.encode());
        self.trailer = Digest::of(&b[at..]);
        fs::write(self.path(), b).unwrap();
    }
}

fn trailer_of(b: &[u8]) -> Trailer {
    Trailer::decode(&b[b.len() - TRAILER_LEN..], b.len() as u64).unwrap()
}

fn trailer_and_table(b: &[u8]) -> (Trailer, Vec<ChunkRecord>) {
    let h = trailer_of(b);
    let t = ChunkRecord::decode_table(&b[h.table_offset as usize..h.index_offset as usize], &h)
        .unwrap();
    (h, t)
}

#[test]
fn reads_any_range_and_follows_hardlinks() {
    let s = sealed(&["/data"]);
    let t = s.open().unwrap();
    t.verify_all().unwrap();
    assert_eq!(t.read_file("/etc/motd").unwrap(), b"hello, sealed world\n");
    assert_eq!(t.read_file("/data/link").unwrap(), s.big);
    assert_eq!(t.read_file("/etc/empty").unwrap(), b"");
    let entry = t.lookup("/data/big").unwrap();
    let data = t.data_of(entry).unwrap();
    for (offset, len) in [
        (0usize, 10usize),
        (4090, 20),
        (8192, 4096),
        (39_990, 100),
        (12_345, 20_000),
    ] {
        let mut buf = vec![0u8; len];
        let n = t.read_at(data, 40_000, offset as u64, &mut buf).unwrap();
        let end = (offset + len).min(40_000);
        assert_eq!(&buf[..n], &s.big[offset..end], "range {offset}+{len}");
    }
}

#[test]
fn swapped_encrypted_chunks_fail_their_tag_even_with_a_resigned_trailer() {
    let mut s = sealed(&["/"]);
    s.rewrite(|b, t| {
        // Chunks 0 and 1 (both full 4 KiB of the big file, encrypted):
        // swap their bytes and their table records' digests.
        assert_eq!(t[0].stored_len, t[1].stored_len, "equal-length chunks");
        let (a, n, c) = (
            t[0].offset as usize,
            t[0].stored_len as usize,
            t[1].offset as usize,
        );
        let first = b[a..a + n].to_vec();
        b.copy_within(c..c + n, a);
        b[c..c + n].copy_from_slice(&first);
        let table_at = trailer_of(b).table_offset as usize;
        let (r0, r1) = (table_at + 20, table_at + TABLE_RECORD_LEN + 20);
        let d0 = b[r0..r0 + 32].to_vec();
        b.copy_within(r1..r1 + 32, r0);
        b[r1..r1 + 32].copy_from_slice(&d0);
    });
    // The table changed, so the index (whose AAD is the table digest) fails first.
    let err = s.open().unwrap_err().to_string();
    assert_eq!(
        err,
        "cannot decrypt the index: wrong image key or tampered data"
    );
}

#[test]
fn a_tampered_encrypted_chunk_is_an_error_not_wrong_bytes() {
    let mut s = sealed(&["/"]);
    s.rewrite(|b, t| {
        b[t[3].offset as usize + 20] ^= 1;
        let table_at = trailer_of(b).table_offset as usize;
        let rec = table_at + 3 * TABLE_RECORD_LEN + 20;
        let stored = &b[t[3].offset as usize..t[3].offset as usize + t[3].stored_len as usize];
        let d = BlobDigest::of(stored).0;
        b[rec..rec + 32].copy_from_slice(&d);
    });
    // Re-hashed table: the index AAD no longer matches either.
    assert!(s.open().is_err());
}

#[test]
fn the_chunk_position_is_bound_by_the_aad() {
    // Keep the table intact but copy chunk 1's bytes over chunk 0: the
    // keyless check catches it, and with the key the GCM tag does too
    // (its additional data holds the chunk's position).
    let s = sealed(&["/"]);
    let mut b = fs::read(s.path()).unwrap();
    let (_, t) = trailer_and_table(&b);
    let t_open = s.open().unwrap();
    let (a, n, c) = (
        t[0].offset as usize,
        t[0].stored_len as usize,
        t[1].offset as usize,
    );
    b.copy_within(c..c + n, a);
    fs::write(s.path(), &b).unwrap();
    let err = t_open.read_chunk(0).unwrap_err().to_string();
    assert_eq!(
        err,
        "cannot decrypt chunk 0: wrong image key or tampered data"
    );
    let blob = SealedBlob::open(&s.path(), &s.trailer).unwrap();
    assert_eq!(
        blob.verify_chunks().unwrap_err().to_string(),
        "sealed image tampered with: chunk 0 does not match the chunk table"
    );
}

#[test]
fn a_plaintext_chunk_changed_on_disk_is_refused_on_read() {
    let s = sealed(&[]);
    let t_open = s.open().unwrap();
    let mut b = fs::read(s.path()).unwrap();
    let (_, t) = trailer_and_table(&b);
    b[t[2].offset as usize] ^= 0x80;
    fs::write(s.path(), &b).unwrap();
    let err = t_open.read_file("/data/big").unwrap_err().to_string();
    assert_eq!(
        err,
        "sealed image tampered with: chunk 2 does not match the chunk table"
    );
}

#[test]
fn the_blob_of_another_workload_or_a_wrong_key_is_refused() {
    let s = sealed(&["/data"]);
    let mut other = s.manifest.clone();
    other.tree.digest = Digest([1; 32]);
    let err = SealedBlob::open(&s.path(), &s.trailer)
        .unwrap()
        .unlock(&s.key, &other)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "sealed image tampered with: the sealed blob belongs to another workload"
    );
    let wrong = ImageKey::from_bytes(&[6u8; 32]).unwrap();
    let err = SealedBlob::open(&s.path(), &s.trailer)
        .unwrap()
        .unlock(&wrong, &s.manifest)
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "cannot decrypt the index: wrong image key or tampered data"
    );
    let err = SealedBlob::open(&s.path(), &Digest([0; 32])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "sealed image tampered with: the sealed blob trailer is not the one the owner signed"
    );
}

#[test]
fn a_blob_of_many_batches_reads_back_and_hashes_as_written() {
    // 1.2 MB in 4 KiB chunks: 293 chunks, more than the writer seals at once.
    let s = sealed_with(&["/data"], 37_500);
    let t = s.open().unwrap();
    assert_eq!(t.read_file("/data/big").unwrap(), s.big);
    t.verify_all().unwrap();
    SealedBlob::open(&s.path(), &s.trailer)
        .unwrap()
        .verify_chunks()
        .unwrap();
    // A byte flipped anywhere (the chunks are checked in parallel ranges
    // of adjacent chunks) names that chunk; two flipped, the first.
    let table = SealedBlob::open(&s.path(), &s.trailer)
        .unwrap()
        .chunks()
        .to_vec();
    let clean = fs::read(s.path()).unwrap();
    for bad in [vec![0], vec![150], vec![table.len() - 1], vec![200, 40]] {
        let mut b = clean.clone();
        for &k in &bad {
            b[table[k].offset as usize + table[k].stored_len as usize / 2] ^= 0x20;
        }
        fs::write(s.path(), &b).unwrap();
        let first = bad.iter().min().unwrap();
        assert_eq!(
            SealedBlob::open(&s.path(), &s.trailer)
                .unwrap()
                .verify_chunks()
                .unwrap_err()
                .to_string(),
            format!("sealed image tampered with: chunk {first} does not match the chunk table")
        );
    }
}

#[test]
fn the_same_inputs_give_the_same_bytes() {
    let a = sealed(&["/data"]);
    let b = sealed(&["/data"]);
    assert_eq!(fs::read(a.path()).unwrap(), fs::read(b.path()).unwrap());
}

#[test]
fn a_blob_cut_short_after_unlock_is_an_error_not_short_bytes() {
    let s = sealed(&["/"]);
    let t = s.open().unwrap();
    let b = fs::read(s.path()).unwrap();
    let (_, table) = trailer_and_table(&b);
    // The host cuts the blob in the middle of chunk 5 under a running reader.
    let cut = table[5].offset + u64::from(table[5].stored_len) / 2;
    fs::OpenOptions::new()
        .write(true)
        .open(s.path())
        .unwrap()
        .set_len(cut)
        .unwrap();
    assert_eq!(t.read_chunk(4).unwrap().len(), 4096);
    let err = t.read_file("/data/big").unwrap_err().to_string();
    assert!(err.starts_with("reading chunk 5"), "{err}");
    assert!(t.read_chunk(6).is_err());
}
