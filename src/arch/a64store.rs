//! What an A64 store instruction writes: its address and bytes, from the instruction word and the
//! registers at the trap. arm64 reports a watchpoint *before* the access, so the bytes at the
//! watched address at that instant are the old ones; the new ones are the store's own operand,
//! which the registers still hold. Pure: tested on words the GNU assembler produced.
//!
//! Covered (ARM DDI 0487, C4.1.66 "Loads and stores"): STR/STRB/STRH of general registers with an
//! unsigned offset, pre- and post-index, unscaled (STUR) and unprivileged (STTR) offsets, and a
//! register offset; STP/STNP of 32- and 64-bit registers with offset, pre- and post-index. The
//! kernel's memcpy, memset, copy_from_user and most C stores use these; anything else (SIMD
//! stores, atomics, exclusives, DC ZVA) gives None and the caller says the new value is unknown.

/// One store: where it writes and what (little-endian bytes, as the kernel runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Store {
    pub addr: u64,
    pub bytes: Vec<u8>,
}

/// Register file at the trap: x0..x30, sp, pc, pstate (struct user_pt_regs order).
pub const SP: usize = 31;

fn bits(w: u32, lo: u32, n: u32) -> u32 {
    (w >> lo) & ((1 << n) - 1)
}

fn sext(v: u64, width: u32) -> i64 {
    let shift = 64 - width;
    ((v << shift) as i64) >> shift
}

/// Xt as a store source: 31 is the zero register.
fn src(regs: &[u64], r: u32) -> Option<u64> {
    if r == 31 {
        Some(0)
    } else {
        regs.get(r as usize).copied()
    }
}

/// Xn as a base: 31 is sp.
fn base(regs: &[u64], r: u32) -> Option<u64> {
    regs.get(if r == 31 { SP } else { r as usize }).copied()
}

fn le(v: u64, size: usize) -> Vec<u8> {
    v.to_le_bytes()[..size].to_vec()
}

/// The store `insn` makes with `regs` (at least 32 entries: x0..x30, sp), or None if it is not a
/// store this module knows.
pub fn decode(insn: u32, regs: &[u64]) -> Option<Store> {
    // Loads and stores of general registers: bits 29..27 = 111, bit 26 (V, SIMD) = 0.
    if bits(insn, 27, 3) == 0b111 && bits(insn, 26, 1) == 0 {
        let size = 1usize << bits(insn, 30, 2);
        let opc = bits(insn, 22, 2);
        if opc != 0 {
            return None; // loads (01), and prefetch/sign-extending loads (1x)
        }
        let (rn, rt) = (bits(insn, 5, 5), bits(insn, 0, 5));
        let val = src(regs, rt)?;
        let b = base(regs, rn)?;
        let addr = match bits(insn, 24, 2) {
            // Unsigned offset, scaled by the size.
            0b01 => b.wrapping_add(u64::from(bits(insn, 10, 12)) << bits(insn, 30, 2)),
            0b00 if bits(insn, 21, 1) == 0 => {
                let imm9 = sext(u64::from(bits(insn, 12, 9)), 9) as u64;
                match bits(insn, 10, 2) {
                    0b01 => b,                                  // post-index: the old base
                    0b00 | 0b10 | 0b11 => b.wrapping_add(imm9), // STUR, STTR, pre-index
                    _ => return None,
                }
            }
            0b00 if bits(insn, 10, 2) == 0b10 => {
                // Register offset: Xm extended by `option`, shifted by the size if S.
                let m = src(regs, bits(insn, 16, 5))?;
                let off = match bits(insn, 13, 3) {
                    0b010 => m & 0xffff_ffff,                  // UXTW
                    0b011 | 0b111 => m,                        // LSL (UXTX) / SXTX
                    0b110 => sext(m & 0xffff_ffff, 32) as u64, // SXTW
                    _ => return None,
                };
                let shift = if bits(insn, 12, 1) == 1 {
                    bits(insn, 30, 2)
                } else {
                    0
                };
                b.wrapping_add(off << shift)
            }
            _ => return None,
        };
        return Some(Store {
            addr,
            bytes: le(val, size),
        });
    }
    // Load/store pair: bits 29..27 = 101, V = 0, L (bit 22) = 0 for stores.
    if bits(insn, 27, 3) == 0b101 && bits(insn, 26, 1) == 0 && bits(insn, 22, 1) == 0 {
        let size = match bits(insn, 30, 2) {
            0b00 => 4,
            0b10 => 8,
            _ => return None, // 01: STGP / LDPSW forms
        };
        let (rt2, rn, rt) = (bits(insn, 10, 5), bits(insn, 5, 5), bits(insn, 0, 5));
        let b = base(regs, rn)?;
        let off = (sext(u64::from(bits(insn, 15, 7)), 7) * size as i64) as u64;
        let addr = match bits(insn, 23, 3) {
            0b000 | 0b010 | 0b011 => b.wrapping_add(off), // STNP, signed offset, pre-index
            0b001 => b,                                   // post-index
            _ => return None,
        };
        let mut bytes = le(src(regs, rt)?, size);
        bytes.extend(le(src(regs, rt2)?, size));
        return Some(Store { addr, bytes });
    }
    None
}

/// `old` (the bytes at `at` before the store) with the bytes of `store` that fall inside them.
pub fn apply(store: &Store, at: u64, old: &[u8]) -> Vec<u8> {
    let mut out = old.to_vec();
    for (i, b) in store.bytes.iter().enumerate() {
        let a = store.addr.wrapping_add(i as u64);
        if let Some(k) = a.checked_sub(at).filter(|k| *k < out.len() as u64) {
            out[k as usize] = *b;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// x_i = 0x1000 * (i + 1) + i; sp = 0xffff_0000_0000_8000.
    fn regs() -> Vec<u64> {
        let mut r: Vec<u64> = (0..31).map(|i| 0x1000 * (i + 1) + i).collect();
        r.push(0xffff_0000_0000_8000);
        r
    }

    fn st(insn: u32) -> Store {
        decode(insn, &regs()).unwrap_or_else(|| panic!("{insn:#010x} is a store"))
    }

    // Words from `aarch64-linux-gnu-as` (binutils 2.40), with what the assembler printed.
    #[test]
    fn single_register_stores() {
        let r = regs();
        // str x1, [x0]
        assert_eq!(
            st(0xf900_0001),
            Store {
                addr: r[0],
                bytes: r[1].to_le_bytes().to_vec()
            }
        );
        // str w2, [x3, #8]
        assert_eq!(
            st(0xb900_0862),
            Store {
                addr: r[3] + 8,
                bytes: r[2].to_le_bytes()[..4].to_vec()
            }
        );
        // strb w6, [x0]
        assert_eq!(
            st(0x3900_0006),
            Store {
                addr: r[0],
                bytes: vec![r[6] as u8]
            }
        );
        // strh w7, [x1, #2]
        assert_eq!(
            st(0x7900_0427),
            Store {
                addr: r[1] + 2,
                bytes: r[7].to_le_bytes()[..2].to_vec()
            }
        );
        // str x4, [sp, #16]
        assert_eq!(st(0xf900_0be4).addr, r[SP] + 16);
        // stur x5, [x0, #-3]
        assert_eq!(st(0xf81f_d005).addr, r[0] - 3);
        // str x6, [x0, #16]!
        assert_eq!(st(0xf801_0c06).addr, r[0] + 16);
        // str x7, [x0], #-8 (post-index: the store goes to the old base)
        assert_eq!(st(0xf81f_8407).addr, r[0]);
        // sttr x1, [x0, #8]
        assert_eq!(st(0xf800_8801).addr, r[0] + 8);
        // str xzr, [x0]
        assert_eq!(st(0xf900_001f).bytes, vec![0; 8]);
    }

    #[test]
    fn register_offset_stores() {
        let r = regs();
        // str x8, [x0, x9]
        assert_eq!(st(0xf829_6808).addr, r[0] + r[9]);
        // str w10, [x0, x9, lsl #2]
        assert_eq!(st(0xb829_780a).addr, r[0] + (r[9] << 2));
        // strb w11, [x0, w9, uxtw]
        assert_eq!(
            st(0x3829_480b),
            Store {
                addr: r[0] + (r[9] & 0xffff_ffff),
                bytes: vec![r[11] as u8]
            }
        );
    }

    #[test]
    fn pair_stores() {
        let r = regs();
        let pair = |a: u64, b: u64, n: usize| {
            let mut v = a.to_le_bytes()[..n].to_vec();
            v.extend_from_slice(&b.to_le_bytes()[..n]);
            v
        };
        // stp x1, x2, [x0]
        assert_eq!(
            st(0xa900_0801),
            Store {
                addr: r[0],
                bytes: pair(r[1], r[2], 8)
            }
        );
        // stp w3, w4, [x0, #-8]
        assert_eq!(
            st(0x293f_1003),
            Store {
                addr: r[0] - 8,
                bytes: pair(r[3], r[4], 4)
            }
        );
        // stp x5, x6, [sp, #-32]!
        assert_eq!(st(0xa9be_1be5).addr, r[SP] - 32);
        // stp x7, x8, [x0], #16
        assert_eq!(st(0xa881_2007).addr, r[0]);
        // stnp x9, x10, [x0, #32]
        assert_eq!(
            st(0xa802_2809),
            Store {
                addr: r[0] + 32,
                bytes: pair(r[9], r[10], 8)
            }
        );
        // stp xzr, xzr, [x0, #16]
        assert_eq!(
            st(0xa901_7c1f),
            Store {
                addr: r[0] + 16,
                bytes: vec![0; 16]
            }
        );
    }

    #[test]
    fn loads_and_unknown_words_are_not_stores() {
        assert_eq!(decode(0xf940_0001, &regs()), None); // ldr x1, [x0]
        assert_eq!(decode(0xd503_201f, &regs()), None); // nop
        assert_eq!(decode(0xf900_0001, &regs()[..1]), None); // x1 missing
    }

    #[test]
    fn apply_overlays_only_the_watched_bytes() {
        let s = Store {
            addr: 0x100,
            bytes: vec![1, 2, 3, 4, 5, 6, 7, 8],
        };
        assert_eq!(apply(&s, 0x104, &[9, 9]), vec![5, 6]);
        assert_eq!(apply(&s, 0x0fe, &[9, 9, 9, 9]), vec![9, 9, 1, 2]);
        assert_eq!(apply(&s, 0x200, &[9]), vec![9]);
    }
}
