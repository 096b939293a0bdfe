//! Page decompressors for kdump-compressed dumps. Each one must produce exactly one page
//! (`block_size` bytes); anything else is a corrupt page.

pub mod lzo;
pub mod snappy;
pub mod xxh64;
pub mod zstd;

use crate::sys::clib::zlib_uncompress;

/// How one page is stored (page_desc flags, `diskdump_mod.h`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    Raw,
    Zlib,
    Lzo,
    Snappy,
    Zstd,
}

impl Compression {
    /// From page_desc `flags`: DUMP_DH_COMPRESSED_ZLIB 0x1, _LZO 0x2, _SNAPPY 0x4, _ZSTD 0x20.
    pub fn from_flags(flags: u32) -> Compression {
        if flags & 0x1 != 0 {
            Compression::Zlib
        } else if flags & 0x2 != 0 {
            Compression::Lzo
        } else if flags & 0x4 != 0 {
            Compression::Snappy
        } else if flags & 0x20 != 0 {
            Compression::Zstd
        } else {
            Compression::Raw
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Compression::Raw => "none",
            Compression::Zlib => "zlib",
            Compression::Lzo => "lzo",
            Compression::Snappy => "snappy",
            Compression::Zstd => "zstd",
        }
    }
}

/// What zlib's `uncompress` return codes mean for a page (zlib.h).
fn zlib_error(rc: i32) -> String {
    let why = match rc {
        -3 => "bad data or a failed adler32 check (Z_DATA_ERROR)",
        -5 => "truncated data, or more than a page (Z_BUF_ERROR)",
        -4 => "out of memory (Z_MEM_ERROR)",
        _ => "unexpected error",
    };
    format!("corrupt zlib data: {why}, zlib error {rc}")
}

/// Why a stored page could not be decoded: damaged data, or a compression kmemd has no decoder
/// for. The page cache (kdump.rs) turns these into memory errors of the same kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CodecError {
    Corrupt(String),
    Unsupported(String),
}

impl std::fmt::Display for CodecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CodecError::Corrupt(s) | CodecError::Unsupported(s) => f.write_str(s),
        }
    }
}

/// A decoder's own error text: the page's data is damaged.
impl From<String> for CodecError {
    fn from(s: String) -> CodecError {
        CodecError::Corrupt(s)
    }
}

/// Decodes one stored page into `out`, which must come out exactly full. zlib and zstd pages
/// carry checks (zlib's adler32 always, zstd's XXH64 when the frame has one), and a failed check
/// is an error; lzo, snappy and raw pages have none, so damage inside them can go unnoticed.
pub fn decode(kind: Compression, input: &[u8], out: &mut [u8]) -> Result<(), CodecError> {
    let produced = match kind {
        Compression::Raw => {
            if input.len() != out.len() {
                return Err(format!(
                    "uncompressed page is {} bytes, expected {}",
                    input.len(),
                    out.len()
                )
                .into());
            }
            out.copy_from_slice(input);
            input.len()
        }
        Compression::Zlib => zlib_uncompress(input, out).map_err(zlib_error)?,
        Compression::Lzo => lzo::decompress(input, out)?,
        Compression::Snappy => snappy::decompress(input, out)?,
        Compression::Zstd => zstd::decompress(input, out)?,
    };
    if produced != out.len() {
        return Err(format!("page decompressed to {produced} bytes, expected {}", out.len()).into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_pick_the_codec_and_short_pages_are_errors() {
        assert_eq!(Compression::from_flags(0), Compression::Raw);
        assert_eq!(Compression::from_flags(1), Compression::Zlib);
        assert_eq!(Compression::from_flags(2), Compression::Lzo);
        assert_eq!(Compression::from_flags(4), Compression::Snappy);
        assert_eq!(Compression::from_flags(0x20), Compression::Zstd);
        let mut out = [0u8; 8];
        assert!(decode(Compression::Raw, &[1; 8], &mut out).is_ok());
        assert_eq!(out, [1; 8]);
        assert!(decode(Compression::Raw, &[1; 7], &mut out).is_err());
        assert!(matches!(
            decode(Compression::Zstd, &[0; 8], &mut out),
            Err(CodecError::Corrupt(_))
        ));
        // zlib.compress(b"abc"): a valid stream, but 3 bytes are not a full page.
        let short = [0x78, 0x9c, 0x4b, 0x4c, 0x4a, 0x06, 0x00, 0x02, 0x4d, 0x01, 0x27];
        assert!(decode(Compression::Zlib, &short, &mut out).is_err());
        let mut three = [0u8; 3];
        assert!(decode(Compression::Zlib, &short, &mut three).is_ok());
        assert_eq!(&three, b"abc");
    }
}
