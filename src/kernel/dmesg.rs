//! `monitor dmesg`: the printk ring buffer of Linux 5.10+ (the lockless `printk_ringbuffer`,
//! kernel/printk/printk_ringbuffer.h), decoded with nothing but VMCOREINFO's `SYMBOL(prb)` and
//! `OFFSET()`/`SIZE()` lines (kernel/printk/printk.c `log_buf_vmcoreinfo_setup`, Linux 5.10+).
//!
//! The text is what `makedumpfile --dump-dmesg` (1.7.2) writes, byte for byte: one
//! `[%5llu.%06lu] ` stamp per record, embedded newlines followed by as many spaces as the stamp
//! is wide, and bytes that are neither printable ASCII nor white space as `\xNN`.

use crate::mem::vmcoreinfo::VmcoreInfo;
use crate::mem::{read_exact, read_u64, ReadError, VirtRead};

/// Largest descriptor ring and text ring accepted (the kernel's own limits are 2^25 bytes of text
/// by CONFIG_LOG_BUF_SHIFT, more with log_buf_len=; these bound what a damaged dump can make us
/// allocate).
const MAX_COUNT_BITS: u64 = 24;
const MAX_TEXT_BITS: u64 = 30;

/// Descriptor states (printk_ringbuffer.h, Linux 5.11+: the top two bits of `state_var`).
const DESC_COMMITTED: u64 = 1;
const DESC_FINALIZED: u64 = 2;
const DESC_FLAGS_SHIFT: u32 = 62;
const DESC_ID_MASK: u64 = !(3u64 << DESC_FLAGS_SHIFT);

/// The VMCOREINFO lines dmesg needs, in one place so a missing one is named.
struct Layout {
    prb: u64,
    rb_size: u64,
    desc_ring: u64,
    text_ring: u64,
    count_bits: u64,
    descs: u64,
    infos: u64,
    head_id: u64,
    tail_id: u64,
    desc_size: u64,
    state_var: u64,
    text_blk_lpos: u64,
    lpos_begin: u64,
    lpos_next: u64,
    info_size: u64,
    ts_nsec: u64,
    text_len: u64,
    size_bits: u64,
    data: u64,
    counter: u64,
}

impl Layout {
    fn from(v: &VmcoreInfo) -> Result<Layout, String> {
        let mut missing = Vec::new();
        let mut off = |key: &str| -> u64 {
            let got = if let Some(k) = key.strip_prefix("SIZE:") {
                v.size(k)
            } else if let Some(k) = key.strip_prefix("SYMBOL:") {
                v.symbol(k)
            } else {
                v.offset(key)
            };
            got.unwrap_or_else(|| {
                missing.push(key.replace("SIZE:", "SIZE ").replace("SYMBOL:", "SYMBOL "));
                0
            })
        };
        let l = Layout {
            prb: off("SYMBOL:prb"),
            rb_size: off("SIZE:printk_ringbuffer"),
            desc_ring: off("printk_ringbuffer.desc_ring"),
            text_ring: off("printk_ringbuffer.text_data_ring"),
            count_bits: off("prb_desc_ring.count_bits"),
            descs: off("prb_desc_ring.descs"),
            infos: off("prb_desc_ring.infos"),
            head_id: off("prb_desc_ring.head_id"),
            tail_id: off("prb_desc_ring.tail_id"),
            desc_size: off("SIZE:prb_desc"),
            state_var: off("prb_desc.state_var"),
            text_blk_lpos: off("prb_desc.text_blk_lpos"),
            lpos_begin: off("prb_data_blk_lpos.begin"),
            lpos_next: off("prb_data_blk_lpos.next"),
            info_size: off("SIZE:printk_info"),
            ts_nsec: off("printk_info.ts_nsec"),
            text_len: off("printk_info.text_len"),
            size_bits: off("prb_data_ring.size_bits"),
            data: off("prb_data_ring.data"),
            counter: off("atomic_long_t.counter"),
        };
        if !missing.is_empty() {
            return Err(format!(
                "VMCOREINFO lacks {}: the kernel is older than 5.10 (no lockless printk ring buffer) or \
                 its VMCOREINFO is incomplete, so the log cannot be decoded",
                missing.join(", ")
            ));
        }
        Ok(l)
    }
}

/// Little-endian field of `width` bytes at `off` in `buf`; 0 past the end (callers read whole
/// structures whose size VMCOREINFO gave, so a field past it means a damaged VMCOREINFO).
fn field(buf: &[u8], off: u64, width: usize) -> u64 {
    let start = usize::try_from(off).unwrap_or(usize::MAX);
    let mut b = [0u8; 8];
    if let Some(src) = start.checked_add(width).and_then(|end| buf.get(start..end)) {
        b[..width].copy_from_slice(src);
    }
    u64::from_le_bytes(b)
}

fn read_vec(mem: &mut dyn VirtRead, addr: u64, len: u64, what: &str) -> Result<Vec<u8>, ReadError> {
    let n = usize::try_from(len).map_err(|_| format!("{what} is too large ({len} bytes)"))?;
    let mut v = vec![0u8; n];
    read_exact(mem, addr, &mut v).map_err(|e| ReadError::mem(format!("cannot read {what}"), e))?;
    Ok(v)
}

/// The whole log as `makedumpfile --dump-dmesg` prints it.
pub fn dmesg(mem: &mut dyn VirtRead, vmci: &VmcoreInfo) -> Result<String, ReadError> {
    let l = Layout::from(vmci)?;
    let prb_addr = read_u64(mem, l.prb).map_err(|e| ReadError::mem("cannot read the prb pointer", e))?;
    let rb = read_vec(mem, prb_addr, l.rb_size, "the printk_ringbuffer")?;
    let count_bits = field(&rb, l.desc_ring + l.count_bits, 4);
    let text_bits = field(&rb, l.text_ring + l.size_bits, 4);
    if count_bits > MAX_COUNT_BITS || !(3..=MAX_TEXT_BITS).contains(&text_bits) {
        return Err(format!(
            "the printk ring buffer at {prb_addr:#x} looks damaged (2^{count_bits} descriptors, 2^{text_bits} \
             bytes of text)"
        ).into());
    }
    let count = 1u64 << count_bits;
    let text_size = 1u64 << text_bits;
    // The three arrays the ring buffer points to, each read whole: (pointer, length, name).
    let (desc_len, info_len) = (
        count.saturating_mul(l.desc_size),
        count.saturating_mul(l.info_size),
    );
    let [descs, infos, text] = [
        (l.desc_ring + l.descs, desc_len, "the printk descriptors"),
        (l.desc_ring + l.infos, info_len, "the printk record infos"),
        (l.text_ring + l.data, text_size, "the printk text ring"),
    ]
    .map(|(ptr, len, what)| read_vec(mem, field(&rb, ptr, 8), len, what));
    let (descs, infos, text) = (descs?, infos?, text?);
    let tail = field(&rb, l.desc_ring + l.tail_id + l.counter, 8);
    let head = field(&rb, l.desc_ring + l.head_id + l.counter, 8);

    let mut out = String::new();
    let mut id = tail;
    // Every id from tail to head inclusive; a damaged head can only make us wrap once around the
    // ring, never loop forever.
    for _ in 0..=count {
        record(&l, &descs, &infos, &text, count, text_size, id, &mut out);
        if id == head {
            break;
        }
        id = id.wrapping_add(1) & DESC_ID_MASK;
    }
    Ok(out)
}

#[allow(clippy::too_many_arguments)]
fn record(
    l: &Layout,
    descs: &[u8],
    infos: &[u8],
    text: &[u8],
    count: u64,
    text_size: u64,
    id: u64,
    out: &mut String,
) {
    let slot = id % count;
    let desc = slot * l.desc_size;
    let state_var = field(descs, desc + l.state_var + l.counter, 8);
    // get_desc_state(): a descriptor whose id is not ours was reused ("miss").
    if state_var & DESC_ID_MASK != id {
        return;
    }
    let state = state_var >> DESC_FLAGS_SHIFT;
    if state != DESC_COMMITTED && state != DESC_FINALIZED {
        return;
    }
    let mut begin = field(descs, desc + l.text_blk_lpos + l.lpos_begin, 8) % text_size;
    let next = field(descs, desc + l.text_blk_lpos + l.lpos_next, 8) % text_size;
    // Data-less records (empty text or a failed reservation) have begin == next.
    if begin == next {
        return;
    }
    let info = slot * l.info_size;
    let mut len = field(infos, info + l.text_len, 2);
    // A block that wraps is stored whole at the start of the ring.
    if begin > next {
        begin = 0;
    }
    // Each block starts with its descriptor id (an unsigned long).
    begin += 8;
    len = len.min(next.saturating_sub(begin));
    let ts = field(infos, info + l.ts_nsec, 8);
    let stamp = format!("[{:5}.{:06}] ", ts / 1_000_000_000, ts % 1_000_000_000 / 1000);
    let indent = stamp.len();
    out.push_str(&stamp);
    let start = usize::try_from(begin).unwrap_or(usize::MAX);
    let end = start.saturating_add(usize::try_from(len).unwrap_or(0));
    for &b in text.get(start..end).unwrap_or_default() {
        match b {
            b'\n' => {
                out.push('\n');
                out.extend(std::iter::repeat_n(' ', indent));
            }
            // C isprint() || isspace() in the C locale.
            0x20..=0x7e | b'\t' | 0x0b | 0x0c | b'\r' => out.push(char::from(b)),
            _ => out.push_str(&format!("\\x{b:02x}")),
        }
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::tasks::testutil::FakeMem;

    const VMCI: &str = "SYMBOL(prb)=ffff000000001000\nSIZE(printk_ringbuffer)=88\n\
OFFSET(printk_ringbuffer.desc_ring)=0\nOFFSET(printk_ringbuffer.text_data_ring)=48\n\
OFFSET(prb_desc_ring.count_bits)=0\nOFFSET(prb_desc_ring.descs)=8\nOFFSET(prb_desc_ring.infos)=16\n\
OFFSET(prb_desc_ring.head_id)=24\nOFFSET(prb_desc_ring.tail_id)=32\nSIZE(prb_desc)=24\n\
OFFSET(prb_desc.state_var)=0\nOFFSET(prb_desc.text_blk_lpos)=8\nOFFSET(prb_data_blk_lpos.begin)=0\n\
OFFSET(prb_data_blk_lpos.next)=8\nSIZE(printk_info)=88\nOFFSET(printk_info.ts_nsec)=8\n\
OFFSET(printk_info.text_len)=16\nOFFSET(prb_data_ring.size_bits)=0\nOFFSET(prb_data_ring.data)=8\n\
OFFSET(atomic_long_t.counter)=0\n";

    /// A 4-descriptor, 64-byte ring holding ids 5..=8: id 5 reused (state miss), 6 "a\nb" at
    /// 1.5 s, 7 a wrapping block with a non-ASCII byte, 8 reserved (skipped).
    fn ring() -> FakeMem {
        let mut m = FakeMem::default();
        let (prb, rb, descs, infos, text) = (
            0xffff_0000_0000_1000u64,
            0x2000u64,
            0x3000u64,
            0x4000u64,
            0x5000u64,
        );
        let base = 0xffff_0000_0000_0000u64;
        m.put_u64(prb, base + rb);
        m.put_bytes(base + rb, &[0u8; 88]);
        m.put_bytes(base + descs, &[0u8; 4 * 24]);
        m.put_u32(base + rb, 2); // count_bits
        m.put_u64(base + rb + 8, base + descs);
        m.put_u64(base + rb + 16, base + infos);
        m.put_u64(base + rb + 24, 8); // head
        m.put_u64(base + rb + 32, 5); // tail
        m.put_u32(base + rb + 48, 6); // 64 bytes of text
        m.put_u64(base + rb + 56, base + text);
        m.put_bytes(base + text, &[0u8; 64]);
        m.put_bytes(base + infos, &[0u8; 4 * 88]);
        let committed = 1u64 << 62;
        let desc = |m: &mut FakeMem, id: u64, sv: u64, begin: u64, next: u64| {
            let d = base + descs + (id % 4) * 24;
            m.put_u64(d, sv);
            m.put_u64(d + 8, begin);
            m.put_u64(d + 16, next);
        };
        desc(&mut m, 5, committed | 1, 0, 16);
        desc(&mut m, 6, committed | 6, 64 + 16, 64 + 32);
        m.put_bytes(base + text + 16 + 8, b"a\nb");
        m.put_u64(base + infos + 2 * 88 + 8, 1_500_000_000);
        m.put_u16(base + infos + 2 * 88 + 16, 3);
        // id 7 begins near the end (48) and wraps: its text is at 0.
        desc(&mut m, 7, (2u64 << 62) | 7, 128 + 48, 192 + 16);
        m.put_bytes(base + text + 8, &[b'x', 0xc3, b'\t']);
        m.put_u64(base + infos + 3 * 88 + 8, 123_456_789_000);
        m.put_u16(base + infos + 3 * 88 + 16, 200); // longer than its block: truncated to 8
        desc(&mut m, 8, 8, 0, 8);
        m
    }

    #[test]
    fn decodes_like_makedumpfile() {
        let mut m = ring();
        let v = VmcoreInfo::parse(VMCI.as_bytes());
        let text = dmesg(&mut m, &v).unwrap();
        assert_eq!(
            text,
            "[    1.500000] a\n               b\n[  123.456789] x\\xc3\t\0\0\0\0\0\n".replace('\0', "\\x00")
        );
    }

    #[test]
    fn missing_keys_and_damage_are_errors() {
        let mut m = ring();
        let v = VmcoreInfo::parse(b"SYMBOL(prb)=ffff000000001000\n");
        let e = dmesg(&mut m, &v).unwrap_err();
        assert_eq!(e.kind(), None, "not a memory failure: {e}");
        let e = e.to_string();
        assert!(e.contains("SIZE printk_ringbuffer") && e.contains("5.10"), "{e}");
        m.put_u32(0xffff_0000_0000_2000, 40);
        let e = dmesg(&mut m, &VmcoreInfo::parse(VMCI.as_bytes())).unwrap_err();
        assert_eq!(e.kind(), None, "not a memory failure: {e}");
        assert!(e.to_string().contains("damaged"), "{e}");
        let mut empty = FakeMem::default();
        let e = dmesg(&mut empty, &VmcoreInfo::parse(VMCI.as_bytes())).unwrap_err();
        assert_eq!(e.kind(), Some(crate::mem::MemErrorKind::NotInDump), "{e}");
    }
}
