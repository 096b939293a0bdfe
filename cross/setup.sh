#!/bin/bash
# Installs the toolchain for kmemd's fully static builds (`make static`, `make cross`,
# see cross/README.md): libbpf-sys vendored+static (libbpf/libelf/zlib built from
# source) for x86_64-unknown-linux-musl and aarch64-unknown-linux-musl on Debian 12
# (bookworm) x86_64, using Debian's rustc-web 1.96 + rust-web-src and cargo
# -Zbuild-std (rustup cannot add targets on these machines). Idempotent; run as
# root. Other jobs may run apt at the same time: every apt step waits for / retries
# on the dpkg and lists locks. Derived from the team's verified toolchain recipe.
#
#   WITH_GNU_ARM64=1  also install libstd-rust-web-dev:arm64 (fallback recipe B:
#                     aarch64-unknown-linux-gnu + crt-static, no build-std)
#   BPF_CLANG_PKG=... clang package for the BPF object (default clang-19; "clang" = 14)
set -euo pipefail

APT="apt-get -o DPkg::Lock::Timeout=600 -y --no-install-recommends"
export DEBIAN_FRONTEND=noninteractive
BPF_CLANG_PKG=${BPF_CLANG_PKG:-clang-19}

[ "$(id -u)" = 0 ] || { echo "setup.sh: run as root (it installs Debian packages)" >&2; exit 1; }

# The lists lock (apt-get update) is not covered by DPkg::Lock::Timeout, and another
# agent's apt may hold the frontend lock for longer than the timeout: retry both.
retry() { # what cmd...
  local what=$1; shift
  for i in $(seq 1 60); do
    if "$@"; then return 0; fi
    echo "setup.sh: $what failed (apt lock held by another job?), retry $i/60 in 10 s" >&2
    sleep 10
  done
  echo "setup.sh: $what kept failing; see the apt errors above" >&2
  return 1
}
apt_update() { retry "apt-get update" apt-get -o DPkg::Lock::Timeout=600 update -qq; }

# ---------------------------------------------------------------- packages
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
  dpkg --add-architecture arm64
  NEED_UPDATE=1
fi
PKGS=(
  # Debian's Rust 1.96 (/usr/bin/rustc, /usr/bin/cargo) + std source for -Zbuild-std
  rustc-web cargo-web libstd-rust-web-dev rust-web-src
  # musl for both arches (libc.a, crt*.o, headers; /usr/lib/<arch>-linux-musl)
  musl-tools musl-dev musl-dev:arm64
  # aarch64 cross gcc/binutils; libc6-dev-arm64-cross brings linux-libc-dev-arm64-cross (UAPI headers)
  gcc-aarch64-linux-gnu libc6-dev-arm64-cross linux-libc-dev-arm64-cross linux-libc-dev
  # libbpf-sys vendored build (zlib configure, elfutils autoreconf/configure, libbpf make)
  make pkg-config autoconf automake autopoint libtool gettext flex bison gawk m4
  # BPF C -> object
  "$BPF_CLANG_PKG"
  # checks / running aarch64 binaries
  qemu-user-static binfmt-support file binutils
  # CI: the aarch64 binary serves an aarch64 crash dump to gdb-multiarch
  gdb-multiarch
)
[ "${WITH_GNU_ARM64:-0}" = 1 ] && PKGS+=(libstd-rust-web-dev:arm64)

missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  apt_update
  retry "apt-get install" $APT install "${missing[@]}"
elif [ -n "${NEED_UPDATE:-}" ]; then
  apt_update
fi

# -Zbuild-std compiles std from rust-web-src with rustc-web: they must be the same release.
v_rustc=$(dpkg-query -W -f='${Version}' rustc-web)
v_src=$(dpkg-query -W -f='${Version}' rust-web-src)
if [ "$v_rustc" != "$v_src" ]; then
  echo "setup.sh: rustc-web $v_rustc and rust-web-src $v_src differ; aligning rust-web-src" >&2
  retry "apt-get install rust-web-src=$v_rustc" $APT install "rust-web-src=$v_rustc"
fi

# ------------------------------------------------- musl compat (both arches)
INC=/usr/local/include/musl-compat
LIB=/usr/local/lib/musl-compat
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT

# argp.h stub: elfutils' lib/ (libeu: color.c, printversion.c) includes <argp.h>;
# musl has no argp. libbpf-sys only installs libelf.a, which never uses argp.
cat > "$TMP/argp.h" <<'EOF'
/* Minimal argp.h stub (musl has no argp) so elfutils' lib/color.c and
 * lib/printversion.c compile. Nothing declared here is ever called by libelf. */
#ifndef MUSL_COMPAT_ARGP_H
#define MUSL_COMPAT_ARGP_H
#include <stdio.h>
#include <errno.h>
#ifndef __error_t_defined
typedef int error_t;
# define __error_t_defined 1
#endif
struct argp_state;
struct argp_option { const char *name; int key; const char *arg; int flags; const char *doc; int group; };
typedef error_t (*argp_parser_t)(int key, char *arg, struct argp_state *state);
struct argp_child;
struct argp {
  const struct argp_option *options; argp_parser_t parser; const char *args_doc;
  const char *doc; const struct argp_child *children;
  char *(*help_filter)(int key, const char *text, void *input); const char *argp_domain;
};
struct argp_child { const struct argp *argp; int flags; const char *header; int group; };
struct argp_state {
  const struct argp *root_argp; int argc; char **argv; int next; unsigned flags;
  unsigned arg_num; int quoted; void *input; void **child_inputs; void *hook;
  char *name; FILE *err_stream; FILE *out_stream; void *pstate;
};
#define ARGP_ERR_UNKNOWN E2BIG
#define OPTION_ARG_OPTIONAL 0x1
#define OPTION_HIDDEN 0x2
#define ARGP_HELP_SEE 0x100
#define ARGP_KEY_ARG 0
#define ARGP_KEY_END 0x1000001
#define ARGP_KEY_INIT 0x1000003
extern void argp_help(const struct argp *, FILE *, unsigned, char *);
extern void argp_error(const struct argp_state *, const char *, ...);
extern error_t argp_parse(const struct argp *, int, char **, unsigned, int *, void *);
extern const char *argp_program_version;
extern void (*argp_program_version_hook)(FILE *, struct argp_state *);
extern const char *argp_program_bug_address;
#endif
EOF

# _dl_find_object for static musl: Debian's gcc-12 libgcc_eh.a (the unwinder we
# hand to Rust as libunwind.a) was built against glibc >= 2.35 and calls it.
cat > "$TMP/dl_find_object.c" <<'EOF'
/* _dl_find_object() for static musl binaries, via dl_iterate_phdr().
 * glibc's struct layout for x86_64/aarch64 (DLFO_STRUCT_HAS_EH_DBASE == 0). */
#define _GNU_SOURCE
#include <link.h>
#include <stdint.h>
#include <stddef.h>
#include <pthread.h>

/* libgcc_eh uses weak references to pthread_once, pthread_mutex_lock/unlock and
 * pthread_get/setspecific (gthr-posix.h) and treats threads as active once
 * __pthread_key_create is linked (Rust's std links it). Weak references do not
 * pull members out of libc.a, so they would stay NULL and _Unwind_Backtrace
 * would call address 0. This object is always pulled together with the
 * unwinder's FDE lookup; referencing them strongly here makes them resolve. */
__attribute__((used)) static void *const force_link_pthread[] = {
  (void *)pthread_once, (void *)pthread_key_create, (void *)pthread_key_delete,
  (void *)pthread_getspecific, (void *)pthread_setspecific,
  (void *)pthread_mutex_lock, (void *)pthread_mutex_unlock,
};

struct dl_find_object {
  unsigned long long dlfo_flags;
  void *dlfo_map_start;
  void *dlfo_map_end;
  struct link_map *dlfo_link_map;
  void *dlfo_eh_frame;
  unsigned long long __dlfo_reserved[7];
};

struct query { uintptr_t pc; struct dl_find_object *out; };

static int cb(struct dl_phdr_info *info, size_t size, void *data)
{
  struct query *q = data;
  const ElfW(Phdr) *eh = NULL;
  uintptr_t lo = UINTPTR_MAX, hi = 0;
  int hit = 0;
  (void)size;
  for (int i = 0; i < info->dlpi_phnum; i++) {
    const ElfW(Phdr) *p = &info->dlpi_phdr[i];
    if (p->p_type == PT_LOAD) {
      uintptr_t s = info->dlpi_addr + p->p_vaddr, e = s + p->p_memsz;
      if (q->pc >= s && q->pc < e) hit = 1;
      if (s < lo) lo = s;
      if (e > hi) hi = e;
    } else if (p->p_type == PT_GNU_EH_FRAME) {
      eh = p;
    }
  }
  if (!hit)
    return 0;
  q->out->dlfo_flags = 0;
  q->out->dlfo_map_start = (void *)lo;
  q->out->dlfo_map_end = (void *)hi;
  q->out->dlfo_link_map = NULL;
  q->out->dlfo_eh_frame = eh ? (void *)(info->dlpi_addr + eh->p_vaddr) : NULL;
  return 1;
}

int _dl_find_object(void *pc, struct dl_find_object *result)
{
  struct query q = { (uintptr_t)pc, result };
  return dl_iterate_phdr(cb, &q) ? 0 : -1;
}
EOF

install_if_changed() { # src dst mode
  if ! cmp -s "$1" "$2"; then install -D -m "$3" "$1" "$2"; fi
}

for a in x86_64 aarch64; do
  case $a in
    x86_64)  kinc=/usr/include; kasm=/usr/include/x86_64-linux-gnu/asm ;;
    aarch64) kinc=/usr/aarch64-linux-gnu/include; kasm=/usr/aarch64-linux-gnu/include/asm ;;
  esac
  # headers: argp stub + kernel UAPI headers (musl ships none; Debian has no linux-musl-dev)
  mkdir -p "$INC/$a" "$LIB/$a"
  install_if_changed "$TMP/argp.h" "$INC/$a/argp.h" 0644
  ln -sfn "$kinc/linux" "$INC/$a/linux"
  ln -sfn "$kinc/asm-generic" "$INC/$a/asm-generic"
  ln -sfn "$kasm" "$INC/$a/asm"

  # gcc specs = Debian's musl-gcc.specs + -static-pie (rcrt1.o) + --eh-frame-hdr
  # + the compat include/lib dirs above
  cat > "$TMP/musl-gcc.specs.$a" <<EOF
%rename cpp_options old_cpp_options

*cpp_options:
-nostdinc -isystem /usr/include/$a-linux-musl -isystem include%s -idirafter $INC/$a %(old_cpp_options)

*cc1:
%(cc1_cpu) -nostdinc -isystem /usr/include/$a-linux-musl -isystem include%s -idirafter $INC/$a

*link_libgcc:
-L/usr/lib/$a-linux-musl -L$LIB/$a -L .%s

*libgcc:
libgcc.a%s %:if-exists(libgcc_eh.a%s)

*startfile:
%{shared:;static-pie:/usr/lib/$a-linux-musl/rcrt1.o;:/usr/lib/$a-linux-musl/Scrt1.o} /usr/lib/$a-linux-musl/crti.o crtbeginS.o%s

*endfile:
crtendS.o%s /usr/lib/$a-linux-musl/crtn.o

*link:
%{!static:%{!static-pie:-dynamic-linker /lib/ld-musl-$a.so.1}} --eh-frame-hdr -nostdlib %{shared:-shared} %{static:-static} %{static-pie:-static -pie --no-dynamic-linker -z text} %{rdynamic:-export-dynamic}

EOF
  install_if_changed "$TMP/musl-gcc.specs.$a" "$LIB/$a/musl-gcc.specs" 0644

  # compiler/linker wrapper (name chosen not to clash with musl-tools' /usr/bin/x86_64-linux-musl-gcc)
  cat > "$TMP/musl-cc-$a" <<EOF
#!/bin/sh
# gcc targeting static musl ($a); see setup.sh / RECIPE.md
exec $a-linux-gnu-gcc "\$@" -specs $LIB/$a/musl-gcc.specs
EOF
  install_if_changed "$TMP/musl-cc-$a" "/usr/local/bin/musl-cc-$a" 0755

  # libunwind.a: Rust's musl std links -lunwind (normally rustup's self-contained
  # LLVM libunwind). Use gcc's libgcc_eh.a + the _dl_find_object shim instead.
  cp "$($a-linux-gnu-gcc -print-file-name=libgcc_eh.a)" "$TMP/libunwind.a.$a"
  "/usr/local/bin/musl-cc-$a" -O2 -fPIC -c "$TMP/dl_find_object.c" -o "$TMP/dl_find_object.o"
  "$a-linux-gnu-ar" rsD "$TMP/libunwind.a.$a" "$TMP/dl_find_object.o"
  install_if_changed "$TMP/libunwind.a.$a" "$LIB/$a/libunwind.a" 0644
done

echo "setup.sh: OK"
echo "  rustc:  $(/usr/bin/rustc --version)"
echo "  cargo:  $(/usr/bin/cargo --version)"
echo "  std src: $(ls -d /usr/lib/rustlib/src/rust/library)"
if command -v "${BPF_CLANG_PKG}" >/dev/null; then
  echo "  bpf clang: $(${BPF_CLANG_PKG} --version | head -1)"
fi
echo "  qemu:   $(qemu-aarch64-static --version | head -1)"
