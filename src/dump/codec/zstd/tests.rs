//! The decoder against frames made by the real zstd tool (tests/data/codec/make_vectors.py),
//! each checked byte for byte against a zlib copy of its page, plus hand-made frames for the
//! error paths libzstd never produces.

use super::*;
use crate::sys::clib::zlib_uncompress;
use std::path::PathBuf;

fn codec_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/codec")
}

/// Every zstd vector: (file name, frame bytes, original page).
fn vectors() -> Vec<(String, Vec<u8>, Vec<u8>)> {
    let mut names: Vec<String> = std::fs::read_dir(codec_dir())
        .unwrap_or_else(|e| panic!("tests/data/codec: {e}"))
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| {
            n.rsplit('.').next().is_some_and(|ext| ext.starts_with("zst")) && !n.ends_with(".zstwide")
        })
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let sample = name.split('.').next().unwrap_or_default().to_string();
            let frame = std::fs::read(codec_dir().join(&name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            (name, frame, page_of(&sample))
        })
        .collect()
}

/// The original page of a sample, from its zlib copy (4 or 64 KiB by the name).
fn page_of(sample: &str) -> Vec<u8> {
    let len = if sample.ends_with("64k") { 65536 } else { 4096 };
    let zlib =
        std::fs::read(codec_dir().join(format!("{sample}.zlib"))).unwrap_or_else(|e| panic!("{sample}: {e}"));
    let mut page = vec![0u8; len];
    assert_eq!(zlib_uncompress(&zlib, &mut page), Ok(len), "{sample}.zlib");
    page
}

#[test]
fn decodes_every_tool_made_frame_exactly_and_the_corpus_covers_the_format() {
    let all = vectors();
    // 9 samples x 5 tool variants, 2 libzstd block samples x 2 levels, the multi-frame page.
    assert!(all.len() >= 50, "only {} zstd vectors", all.len());
    // One decoder for the whole corpus: its reused buffers and tables must not leak between pages.
    let mut d = Decoder::new();
    for (name, frame, page) in &all {
        let mut out = vec![0u8; page.len()];
        assert_eq!(d.decompress(frame, &mut out), Ok(page.len()), "{name}");
        assert!(out == *page, "{name}: decoded bytes differ from the original");
        // One byte less room is an error, never a truncated page.
        let mut short = vec![0u8; page.len() - 1];
        assert!(
            d.decompress(frame, &mut short).is_err(),
            "{name} fit a short buffer"
        );
    }
    let c = d.coverage.clone();
    eprintln!("zstd corpus coverage: {c:?}");
    let kinds = [
        ("Zstandard frames", c.frames),
        ("skippable frames", c.skippable_frames),
        ("single-segment frames", c.single_segment),
        ("frames with a window descriptor", c.windowed),
        ("frames with a content size", c.content_size),
        ("verified content checksums", c.checksums),
        ("raw blocks", c.raw_blocks),
        ("RLE blocks", c.rle_blocks),
        ("compressed blocks", c.compressed_blocks),
        ("raw literals", c.raw_literals),
        ("RLE literals", c.rle_literals),
        ("Huffman literals with a tree", c.huffman_literals),
        ("treeless literals", c.treeless_literals),
        ("1-stream literals", c.one_stream),
        ("4-stream literals", c.four_streams),
        ("direct Huffman weights", c.direct_weights),
        ("FSE-compressed Huffman weights", c.fse_weights),
        ("predefined sequence tables", c.table_modes[0]),
        ("RLE sequence tables", c.table_modes[1]),
        ("FSE-compressed sequence tables", c.table_modes[2]),
        ("repeated sequence tables", c.table_modes[3]),
        ("blocks without sequences", c.no_sequences),
        ("repeat offsets", c.repeat_offsets),
    ];
    let missed: Vec<&str> = kinds.iter().filter(|(_, n)| *n == 0).map(|(k, _)| *k).collect();
    assert!(missed.is_empty(), "the zstd corpus never exercised: {missed:?}");
}

#[test]
fn frames_larger_than_the_window_limit_are_refused_by_name() {
    // text4k.zstwide: zstd --ultra -22 --long from a pipe, declaring a 128 MiB window.
    let frame = std::fs::read(codec_dir().join("text4k.zstwide")).unwrap_or_default();
    let mut out = vec![0u8; 4096];
    let e = decompress(&frame, &mut out).err().unwrap_or_default();
    assert!(e.contains("134217728-byte window"), "{e}");
}

#[test]
fn a_failed_checksum_is_an_error() {
    // random4k.zst3 is one raw block: a flipped data byte still "decodes", and only the
    // checksum can tell.
    let good = std::fs::read(codec_dir().join("random4k.zst3")).unwrap_or_default();
    let mut out = vec![0u8; 4096];
    assert_eq!(decompress(&good, &mut out), Ok(4096));
    for at in [20, good.len() / 2, good.len() - 1] {
        let mut bad = good.clone();
        if let Some(b) = bad.get_mut(at) {
            *b ^= 0x10;
        }
        let e = decompress(&bad, &mut out).err().unwrap_or_default();
        assert!(e.contains("checksum mismatch"), "flip at {at}: {e}");
    }
}

/// A cut frame is an error; a cut between the frames of a multi-frame page decodes the frames
/// before it, which is less than the page (and an error for `codec::decode`).
#[test]
fn every_truncation_fails() {
    for (name, frame, page) in vectors() {
        if frame.len() > 4000 {
            continue; // the raw 4 KiB pages: their cuts are all "runs past the input" anyway
        }
        let mut out = vec![0u8; page.len()];
        for cut in 0..frame.len() {
            let r = decompress(frame.get(..cut).unwrap_or_default(), &mut out);
            let between_frames = name.ends_with(".zstframes") && r.as_ref().is_ok_and(|&n| n < page.len());
            assert!(r.is_err() || between_frames, "{name} cut at {cut} decoded: {r:?}");
        }
    }
}

#[test]
fn corrupt_frames_fail_or_decode_exactly_without_panicking() {
    let mut d = Decoder::new();
    for (name, frame, page) in vectors() {
        let checked = d.coverage.checksums;
        let mut out = vec![0u8; page.len()];
        assert!(d.decompress(&frame, &mut out).is_ok());
        let has_checksum = d.coverage.checksums > checked;
        // About 100 positions a frame, always including the headers (debug builds are slow;
        // the zstd fuzz target flips everything).
        let step = 1 + frame.len() / 100;
        let positions = (0..24.min(frame.len())).chain((24..frame.len()).step_by(step));
        for at in positions {
            for flip in [0x01u8, 0xa4] {
                let mut bad = frame.clone();
                if let Some(b) = bad.get_mut(at) {
                    *b ^= flip;
                }
                if let Ok(n) = d.decompress(&bad, &mut out) {
                    assert!(n <= out.len(), "{name}");
                    // A frame with a checksum that still decodes must decode to the original:
                    // the flip hit something that does not change the content.
                    if has_checksum && n == page.len() {
                        assert!(out == page, "{name}: flip {flip:#x} at {at} gave wrong data");
                    }
                }
            }
        }
    }
}

/// A single-segment frame of one RLE block: `count` copies of `byte`, content size `fcs`.
fn rle_frame(fcs: u8, count: u32, byte: u8) -> Vec<u8> {
    let mut f = FRAME_MAGIC.to_le_bytes().to_vec();
    f.extend([0x20, fcs]);
    let header = (count << 3) | (1 << 1) | 1;
    f.extend(&header.to_le_bytes()[..3]);
    f.push(byte);
    f
}

#[test]
fn hand_made_frames_hit_each_refusal() {
    let mut out = [0u8; 8];
    assert_eq!(decompress(&rle_frame(5, 5, b'x'), &mut out), Ok(5));
    assert_eq!(&out[..5], b"xxxxx");
    let err = |frame: &[u8], out: &mut [u8]| decompress(frame, out).err().unwrap_or_default();
    // Declared size and blocks disagree; the declared size does not fit.
    assert!(err(&rle_frame(4, 5, b'x'), &mut out).contains("exceeds the frame's 4-byte block limit"));
    assert!(err(&rle_frame(5, 5, b'x'), &mut [0u8; 4]).contains("more than the 4 left"));
    // Reserved block type, reserved header bit, a dictionary, bad magic, trailing bytes, nothing.
    let mut reserved = rle_frame(5, 5, b'x');
    reserved[6] |= 0b110;
    assert!(err(&reserved, &mut out).contains("reserved block type"));
    let mut bit = rle_frame(5, 5, b'x');
    bit[4] |= 0x08;
    assert!(err(&bit, &mut out).contains("reserved bit"));
    let mut dict = FRAME_MAGIC.to_le_bytes().to_vec();
    dict.extend([0x21, 7, 5]);
    dict.extend(&rle_frame(5, 5, b'x')[6..]);
    assert!(err(&dict, &mut out).contains("dictionary 7"));
    assert!(err(b"\x28\xb5\x2f\xfe\x20\x05", &mut out).contains("bad frame magic"));
    let mut trailing = rle_frame(5, 5, b'x');
    trailing.push(0);
    assert!(err(&trailing, &mut out).contains("frame magic"));
    assert!(err(&[], &mut out).contains("empty"));
    // A skippable frame alone is valid and produces nothing; one that runs past the input is not.
    assert_eq!(
        decompress(&[0x5f, 0x2a, 0x4d, 0x18, 1, 0, 0, 0, 9], &mut out),
        Ok(0)
    );
    assert!(err(&[0x5f, 0x2a, 0x4d, 0x18, 2, 0, 0, 0, 9], &mut out).contains("skippable"));
    // A raw block larger than the page.
    let mut raw = FRAME_MAGIC.to_le_bytes().to_vec();
    raw.extend([0x00, 0x00]); // windowed (1 KiB), no content size
    raw.extend(&((9u32 << 3) | 1).to_le_bytes()[..3]);
    raw.extend([1u8; 9]);
    assert!(err(&raw, &mut out).contains("past the end of the page"));
    assert_eq!(decompress(&raw, &mut [0u8; 9]), Ok(9));
}

#[test]
fn codec_decode_accepts_only_a_full_page() {
    let frame = std::fs::read(codec_dir().join("text4k.zst19")).unwrap_or_default();
    let page = page_of("text4k");
    let mut out = vec![0u8; 4096];
    assert_eq!(
        crate::dump::codec::decode(crate::dump::codec::Compression::Zstd, &frame, &mut out),
        Ok(())
    );
    assert!(out == page);
    let mut big = vec![0u8; 8192];
    let e = crate::dump::codec::decode(crate::dump::codec::Compression::Zstd, &frame, &mut big)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(e.contains("4096 bytes, expected 8192"), "{e}");
}
