//! Bounds-checked access to untrusted dump bytes: a positioned-read abstraction over files (so
//! every reader also runs on in-memory buffers in tests) and a field reader whose errors name the
//! field that did not fit.

use byteorder::{BigEndian, ByteOrder, LittleEndian};
use std::fs::File;
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, OpenOptionsExt};
use std::path::Path;

/// Byte order of a dump's headers (the dumped machine's, or big-endian for flattened records).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endian {
    Little,
    Big,
}

/// What stopped a parser of a file format (a dump's headers, an ELF file's tables).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FormatErrorKind {
    /// The file, or the bytes read for a structure, end before what its headers promise.
    Truncated,
    /// The values make no sense: an impossible offset or size, a structure larger than the
    /// file.
    Corrupt,
    /// A file kmemd does not read, or one without what kmemd needs from it (a format version
    /// or machine it does not know, an ELF file with no section headers).
    Unsupported,
    /// Reading the file failed (the system's error is in the detail).
    Io,
}

/// Why a file's structure could not be parsed: a kind, and the sentence for people (it names
/// the structure and field). Layers that report in text turn it into a `String` with `?`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError {
    pub kind: FormatErrorKind,
    pub detail: String,
}

impl FormatError {
    pub fn new(kind: FormatErrorKind, detail: impl Into<String>) -> FormatError {
        FormatError {
            kind,
            detail: detail.into(),
        }
    }

    pub fn truncated(detail: impl Into<String>) -> FormatError {
        FormatError::new(FormatErrorKind::Truncated, detail)
    }

    pub fn corrupt(detail: impl Into<String>) -> FormatError {
        FormatError::new(FormatErrorKind::Corrupt, detail)
    }

    pub fn unsupported(detail: impl Into<String>) -> FormatError {
        FormatError::new(FormatErrorKind::Unsupported, detail)
    }

    /// A failed [`ReadAt`] read, said with `context` before the read's own sentence: a source
    /// that ends first is Truncated, any other failure Io.
    pub fn from_io(context: &str, e: &io::Error) -> FormatError {
        let kind = match e.kind() {
            io::ErrorKind::UnexpectedEof => FormatErrorKind::Truncated,
            _ => FormatErrorKind::Io,
        };
        FormatError::new(kind, format!("{context}: {e}"))
    }
}

impl std::fmt::Display for FormatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.detail)
    }
}

impl std::error::Error for FormatError {}

/// For the layers that report in text (opening a dump or a vmlinux, `--info`).
impl From<FormatError> for String {
    fn from(e: FormatError) -> String {
        e.detail
    }
}

/// Positioned reads from something of known length: a file, a buffer, a reassembled flattened
/// file. `&self` so one source can be shared by readers and caches.
pub trait ReadAt {
    /// Total length in bytes.
    fn len(&self) -> u64;

    /// Fills `buf` from `offset`. Fails unless every byte was read: with
    /// `ErrorKind::UnexpectedEof` when the source ends first (a truncated file), with the
    /// system's error when the read itself fails. The error's text is a sentence for people.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes the source really holds. It bounds any one structure read from it: a flattened
    /// dump's `len()` is only what its records claim (their holes read as zeros), so it cannot
    /// size an allocation by itself.
    fn stored_len(&self) -> u64 {
        self.len()
    }
}

impl<T: ReadAt + ?Sized> ReadAt for &T {
    fn len(&self) -> u64 {
        (**self).len()
    }

    fn stored_len(&self) -> u64 {
        (**self).stored_len()
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        (**self).read_exact_at(offset, buf)
    }
}

/// A regular file (or block device) read with `pread`, so no seek position is shared.
pub struct FileSource {
    file: File,
    len: u64,
}

impl FileSource {
    /// An already opened file of `len` bytes (callers that word their own open errors).
    pub fn new(file: File, len: u64) -> FileSource {
        FileSource { file, len }
    }

    /// The file, for reads that word their own errors.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// Opens a dump for positioned reads: a regular file, or a block device holding one.
    ///
    /// Anything else is refused by its type before it is opened, with what it is: opening a
    /// FIFO blocks until a writer comes, opening a device can act on it (a tape rewinds, a
    /// watchdog starts), and `/dev/zero`, `/proc/self/mem` and their kind report a size of 0
    /// that says nothing of their contents. The file is opened `O_NONBLOCK | O_NOCTTY` and
    /// checked again, so one swapped in after the first look neither blocks nor becomes a
    /// controlling terminal; neither flag changes reads from a file or a block device.
    pub fn open(path: impl AsRef<Path>) -> Result<FileSource, FormatError> {
        let path = path.as_ref();
        let name = path.display();
        let meta = std::fs::metadata(path).map_err(|e| io_error(format!("cannot open {name}: {e}")))?;
        refuse_unless_file(path, &meta)?;
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
            .open(path)
            .map_err(|e| io_error(format!("cannot open {name}: {e}")))?;
        let meta = file
            .metadata()
            .map_err(|e| io_error(format!("cannot stat {name}: {e}")))?;
        refuse_unless_file(path, &meta)?;
        let len = if meta.file_type().is_block_device() {
            // A block device's st_size is 0; its size is where a seek to the end lands.
            let len = (&file)
                .seek(SeekFrom::End(0))
                .map_err(|e| io_error(format!("cannot find the size of block device {name}: {e}")))?;
            if len == 0 {
                return Err(FormatError::truncated(format!(
                    "{name} is a block device with nothing in it (0 bytes); give the device or \
                     file that holds the dump"
                )));
            }
            len
        } else {
            meta.len()
        };
        if len == 0 {
            if let Some(fs) = crate::sys::os::fs_magic(&file).ok().and_then(pseudo_fs_name) {
                return Err(FormatError::unsupported(format!(
                    "{name} is not a regular file: it is a file of the kernel's {fs} \
                     pseudo-filesystem, made up as it is read, with no size to read it by; give \
                     a regular file or a block device"
                )));
            }
        }
        Ok(FileSource { file, len })
    }
}

/// Names of the kernel pseudo-filesystems whose files report a size of 0 whatever they hold
/// (magic numbers from include/uapi/linux/magic.h, Linux 6.x).
fn pseudo_fs_name(magic: u64) -> Option<&'static str> {
    Some(match magic {
        0x9fa0 => "proc (/proc)",
        0x6265_6572 => "sysfs (/sys)",
        0x6462_6720 => "debugfs",
        0x7472_6163 => "tracefs",
        0x7363_6673 => "securityfs",
        0x6367_7270 => "cgroup2",
        0x0027_e0eb => "cgroup",
        0x6265_6570 => "configfs",
        0xcafe_4a11 => "bpf",
        _ => return None,
    })
}

/// Err, saying what `path` is instead, unless it is a regular file or a block device.
fn refuse_unless_file(path: &Path, meta: &std::fs::Metadata) -> Result<(), FormatError> {
    let name = path.display();
    let t = meta.file_type();
    let what = if t.is_file() || t.is_block_device() {
        return Ok(());
    } else if t.is_dir() {
        return Err(FormatError::unsupported(format!(
            "{name} is a directory; give the path of a file in it"
        )));
    } else if t.is_fifo() {
        "a FIFO (named pipe)".to_string()
    } else if t.is_socket() {
        "a UNIX socket".to_string()
    } else if t.is_char_device() {
        let dev = meta.rdev();
        format!("a character device ({}:{})", libc::major(dev), libc::minor(dev))
    } else {
        "neither a file nor a device".to_string()
    };
    Err(FormatError::unsupported(format!(
        "{name} is not a regular file: it is {what}. kmemd reads at offsets all over the file, \
         so it needs a regular file or a block device; save the data to a file first"
    )))
}

/// Opening or sizing a file failed: the sentence already says what and why.
fn io_error(detail: String) -> FormatError {
    FormatError::new(FormatErrorKind::Io, detail)
}

impl ReadAt for FileSource {
    fn len(&self) -> u64 {
        self.len
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        // The kind stays the system's (UnexpectedEof for a file shorter than the read).
        self.file.read_exact_at(buf, offset).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("reading {} bytes at offset {offset:#x} failed: {e}", buf.len()),
            )
        })
    }
}

impl ReadAt for Vec<u8> {
    fn len(&self) -> u64 {
        self.as_slice().len() as u64
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.as_slice().read_exact_at(offset, buf)
    }
}

impl ReadAt for [u8] {
    fn len(&self) -> u64 {
        <[u8]>::len(self) as u64
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let src = usize::try_from(offset)
            .ok()
            .and_then(|start| Some((start, start.checked_add(buf.len())?)))
            .and_then(|(start, end)| self.get(start..end));
        match src {
            Some(src) => {
                buf.copy_from_slice(src);
                Ok(())
            }
            None => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "{} bytes at offset {offset:#x} are past the end ({} bytes)",
                    buf.len(),
                    <[u8]>::len(self)
                ),
            )),
        }
    }
}

/// Reads `len` bytes at `offset` into a new vector, checking first that they lie inside the
/// source, so a corrupt length can never cause a huge allocation. `what` names the structure for
/// the error message.
pub fn read_vec(src: &dyn ReadAt, offset: u64, len: u64, what: &str) -> Result<Vec<u8>, FormatError> {
    let end = offset.checked_add(len).ok_or_else(|| {
        FormatError::corrupt(format!(
            "the {what} has an impossible offset {offset:#x} + length {len:#x}"
        ))
    })?;
    if end > src.len() {
        return Err(FormatError::truncated(format!(
            "the file is truncated or corrupt: the {what} ({len} bytes at offset {offset:#x}) ends past \
             the end of the file ({} bytes)",
            src.len()
        )));
    }
    if len > src.stored_len() {
        return Err(FormatError::corrupt(format!(
            "the file is corrupt: the {what} claims {len} bytes, more than the whole file holds ({} bytes)",
            src.stored_len()
        )));
    }
    let len = usize::try_from(len)
        .map_err(|_| FormatError::corrupt(format!("the {what} is too large ({len} bytes)")))?;
    let mut buf = vec![0u8; len];
    src.read_exact_at(offset, &mut buf)
        .map_err(|e| FormatError::from_io(&format!("cannot read the {what}"), &e))?;
    Ok(buf)
}

/// A view of untrusted bytes with checked, endian-aware field accessors. Every accessor takes the
/// field's name so a failure says which field of which structure did not fit.
#[derive(Clone, Copy)]
pub struct Bytes<'a> {
    data: &'a [u8],
    endian: Endian,
    what: &'a str,
}

impl<'a> Bytes<'a> {
    /// `what` names the structure (e.g. "ELF header") in error messages.
    pub fn new(data: &'a [u8], endian: Endian, what: &'a str) -> Bytes<'a> {
        Bytes { data, endian, what }
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn endian(&self) -> Endian {
        self.endian
    }

    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// `len` bytes at `off`, or an error naming `field`.
    pub fn slice(&self, off: usize, len: usize, field: &str) -> Result<&'a [u8], FormatError> {
        off.checked_add(len)
            .and_then(|end| self.data.get(off..end))
            .ok_or_else(|| {
                FormatError::truncated(format!(
                    "the {} is truncated or corrupt: field {field} ({len} bytes at offset {off}) is outside \
                 its {} bytes",
                    self.what,
                    self.data.len()
                ))
            })
    }

    /// A sub-view of `len` bytes at `off`, with the same byte order.
    pub fn sub(&self, off: usize, len: usize, field: &str) -> Result<Bytes<'a>, FormatError> {
        Ok(Bytes {
            data: self.slice(off, len, field)?,
            ..*self
        })
    }

    pub fn u8(&self, off: usize, field: &str) -> Result<u8, FormatError> {
        Ok(self.slice(off, 1, field)?.first().copied().unwrap_or(0))
    }

    pub fn u16(&self, off: usize, field: &str) -> Result<u16, FormatError> {
        let b = self.slice(off, 2, field)?;
        Ok(match self.endian {
            Endian::Little => LittleEndian::read_u16(b),
            Endian::Big => BigEndian::read_u16(b),
        })
    }

    pub fn u32(&self, off: usize, field: &str) -> Result<u32, FormatError> {
        let b = self.slice(off, 4, field)?;
        Ok(match self.endian {
            Endian::Little => LittleEndian::read_u32(b),
            Endian::Big => BigEndian::read_u32(b),
        })
    }

    pub fn u64(&self, off: usize, field: &str) -> Result<u64, FormatError> {
        let b = self.slice(off, 8, field)?;
        Ok(match self.endian {
            Endian::Little => LittleEndian::read_u64(b),
            Endian::Big => BigEndian::read_u64(b),
        })
    }

    pub fn i32(&self, off: usize, field: &str) -> Result<i32, FormatError> {
        Ok(self.u32(off, field)? as i32)
    }

    pub fn i64(&self, off: usize, field: &str) -> Result<i64, FormatError> {
        Ok(self.u64(off, field)? as i64)
    }

    /// A NUL-padded fixed-size text field, up to its first NUL, lossily decoded.
    pub fn cstr(&self, off: usize, len: usize, field: &str) -> Result<String, FormatError> {
        let b = self.slice(off, len, field)?;
        let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
        Ok(String::from_utf8_lossy(b.get(..end).unwrap_or_default()).into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_read_in_the_requested_byte_order() {
        let data = [1u8, 2, 3, 4, 5, 6, 7, 8, 9];
        let le = Bytes::new(&data, Endian::Little, "test header");
        let be = Bytes::new(&data, Endian::Big, "test header");
        assert_eq!(le.u16(0, "a").ok(), Some(0x0201));
        assert_eq!(be.u16(0, "a").ok(), Some(0x0102));
        assert_eq!(le.u32(1, "b").ok(), Some(0x0504_0302));
        assert_eq!(be.u32(1, "b").ok(), Some(0x0203_0405));
        assert_eq!(le.u64(1, "c").ok(), Some(0x0908_0706_0504_0302));
        assert_eq!(be.u64(0, "c").ok(), Some(0x0102_0304_0506_0708));
        assert_eq!(le.u8(8, "d").ok(), Some(9));
        let neg = [0xffu8; 8];
        assert_eq!(Bytes::new(&neg, Endian::Little, "x").i32(0, "e").ok(), Some(-1));
        assert_eq!(Bytes::new(&neg, Endian::Little, "x").i64(0, "e").ok(), Some(-1));
    }

    #[test]
    fn out_of_range_fields_name_the_field_and_structure() {
        let data = [0u8; 6];
        let b = Bytes::new(&data, Endian::Little, "widget header");
        let err = b.u32(4, "e_flags").err();
        assert_eq!(err.as_ref().map(|e| e.kind), Some(FormatErrorKind::Truncated));
        let err = err.map(String::from).unwrap_or_default();
        assert!(err.contains("e_flags") && err.contains("widget header"), "{err}");
        assert!(
            b.u64(usize::MAX - 2, "huge").is_err(),
            "offset overflow must not panic"
        );
        assert!(b.slice(7, 0, "past end").is_err());
        assert!(b.slice(6, 0, "at end").is_ok());
        let sub = b.sub(2, 4, "tail").ok();
        assert_eq!(sub.map(|s| s.len()), Some(4));
        assert!(b.sub(3, 4, "tail").is_err());
    }

    #[test]
    fn cstr_stops_at_the_first_nul() {
        let data = *b"x86_64\0\0garbage";
        let b = Bytes::new(&data, Endian::Little, "utsname");
        assert_eq!(b.cstr(0, 8, "machine").ok().as_deref(), Some("x86_64"));
        assert_eq!(b.cstr(8, 7, "rest").ok().as_deref(), Some("garbage"));
    }

    #[test]
    fn read_at_on_buffers_checks_bounds() {
        let data: Vec<u8> = (0u8..32).collect();
        let mut buf = [0u8; 4];
        assert!(data.read_exact_at(28, &mut buf).is_ok());
        assert_eq!(buf, [28, 29, 30, 31]);
        let short = data.read_exact_at(29, &mut buf).err();
        assert_eq!(
            short.as_ref().map(io::Error::kind),
            Some(io::ErrorKind::UnexpectedEof)
        );
        assert_eq!(
            short.map(|e| e.to_string()).as_deref(),
            Some("4 bytes at offset 0x1d are past the end (32 bytes)")
        );
        let wrap = data.read_exact_at(u64::MAX, &mut buf).err();
        assert_eq!(wrap.map(|e| e.kind()), Some(io::ErrorKind::UnexpectedEof));
        assert_eq!(read_vec(&data, 4, 2, "thing").ok(), Some(vec![4, 5]));
        let err = read_vec(&data, 30, 1 << 40, "bitmap").err();
        assert_eq!(err.as_ref().map(|e| e.kind), Some(FormatErrorKind::Truncated));
        let err = err.map(String::from).unwrap_or_default();
        assert!(err.contains("bitmap") && err.contains("truncated"), "{err}");
        let wrap = read_vec(&data, u64::MAX, 2, "thing").err();
        assert_eq!(wrap.map(|e| e.kind), Some(FormatErrorKind::Corrupt));
        // The length of a flattened dump is what its records claim; a structure larger than
        // the bytes really stored is corrupt however long the file says it is.
        struct Claims(Vec<u8>);
        impl ReadAt for Claims {
            fn len(&self) -> u64 {
                1 << 20
            }
            fn stored_len(&self) -> u64 {
                self.0.len() as u64
            }
            fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
                self.0.read_exact_at(offset, buf)
            }
        }
        let big = read_vec(&Claims(data.clone()), 0, 64, "table").err();
        assert_eq!(big.map(|e| e.kind), Some(FormatErrorKind::Corrupt));
        // A read that fails after the bounds check keeps its kind: short is Truncated.
        let short = read_vec(&Claims(data.clone()), 16, 32, "table").err();
        assert_eq!(short.as_ref().map(|e| e.kind), Some(FormatErrorKind::Truncated));
        let text = short.map(String::from).unwrap_or_default();
        assert!(
            text.starts_with("cannot read the table: 32 bytes at offset 0x10"),
            "{text}"
        );
    }

    #[test]
    fn file_source_reads_at_offsets() {
        let dir = std::env::temp_dir().join(format!("kmemd-bytes-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("f");
        std::fs::write(&path, b"hello, dump").ok();
        let src = FileSource::open(path.to_str().unwrap_or_default());
        let src = match src {
            Ok(s) => s,
            Err(e) => panic!("{e}"),
        };
        assert_eq!(src.len(), 11);
        let mut buf = [0u8; 4];
        assert!(src.read_exact_at(7, &mut buf).is_ok());
        assert_eq!(&buf, b"dump");
        let short = src.read_exact_at(8, &mut buf).err();
        assert_eq!(
            short.as_ref().map(io::Error::kind),
            Some(io::ErrorKind::UnexpectedEof)
        );
        let text = short.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            text.starts_with("reading 4 bytes at offset 0x8 failed: "),
            "{text}"
        );
        let is_dir = FileSource::open(dir.to_str().unwrap_or_default()).err();
        assert_eq!(is_dir.map(|e| e.kind), Some(FormatErrorKind::Unsupported));
        let missing = FileSource::open("/nonexistent/kmemd").err();
        assert_eq!(missing.as_ref().map(|e| e.kind), Some(FormatErrorKind::Io));
        let text = missing.map(String::from).unwrap_or_default();
        assert!(text.starts_with("cannot open /nonexistent/kmemd: "), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
