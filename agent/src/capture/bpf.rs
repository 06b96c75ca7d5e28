//! Compiling a tcpdump-style filter expression into a classic BPF program for
//! `SO_ATTACH_FILTER`. The compiler is libpcap's own `pcap_compile`, loaded at run time with
//! `dlopen` (the `libpcap0.8` package), so the binary neither links nor builds against libpcap
//! and only `--filter` needs it.
//!
//! Live capture reads cooked (`SOCK_DGRAM`) packets, which start at the network header, while
//! libpcap compiles for `DLT_LINUX_SLL` (a 16-byte cooked header before it). As libpcap itself
//! does for its cooked sockets (`fix_offset` in `pcap-linux.c`), packet offsets past the header
//! are shifted down and the header's packet-type and protocol fields become the kernel's
//! ancillary loads; a filter that reads any other header field cannot run in the kernel and is
//! refused with a clear error.

use std::ffi::{c_char, c_int, c_uint, c_void, CStr, CString};

use crate::AgentError;

/// `DLT_LINUX_SLL`.
const DLT_LINUX_SLL: c_int = 113;
const SLL_HDR_LEN: u32 = 16;
const SNAPLEN: c_int = 262_144;
/// `PCAP_NETMASK_UNKNOWN`: broadcast checks cannot be compiled, everything else can.
const NETMASK_UNKNOWN: u32 = 0xffff_ffff;
/// Linux ancillary data offsets (`SKF_AD_OFF`, `SKF_AD_PROTOCOL`, `SKF_AD_PKTTYPE`).
const SKF_AD_OFF: i32 = -0x1000;
const SKF_AD_PROTOCOL: i32 = 0;
const SKF_AD_PKTTYPE: i32 = 4;
/// BPF instruction classes and addressing modes.
const BPF_LD: u16 = 0x00;
const BPF_LDX: u16 = 0x01;
const BPF_ABS: u16 = 0x20;
const BPF_IND: u16 = 0x40;
const BPF_MSH: u16 = 0xa0;

/// Shared-object names of libpcap on Debian/Ubuntu (`libpcap0.8`), Fedora and Alpine.
const LIBPCAP: [&str; 3] = ["libpcap.so.0.8", "libpcap.so.1", "libpcap.so"];

/// One classic BPF instruction (`struct sock_filter` / `struct bpf_insn`, same layout).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BpfInsn {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

#[repr(C)]
struct BpfProgram {
    len: c_uint,
    insns: *mut BpfInsn,
}

type OpenDead = unsafe extern "C" fn(c_int, c_int) -> *mut c_void;
type Compile =
    unsafe extern "C" fn(*mut c_void, *mut BpfProgram, *const c_char, c_int, u32) -> c_int;
type GetErr = unsafe extern "C" fn(*mut c_void) -> *mut c_char;
type FreeCode = unsafe extern "C" fn(*mut BpfProgram);
type Close = unsafe extern "C" fn(*mut c_void);

fn err(expr: &str, reason: impl Into<String>) -> AgentError {
    AgentError::Filter {
        expr: expr.to_string(),
        reason: reason.into(),
    }
}

unsafe fn sym<T: Copy>(lib: *mut c_void, name: &CStr) -> Option<T> {
    let p = libc::dlsym(lib, name.as_ptr());
    (!p.is_null()).then(|| std::mem::transmute_copy::<*mut c_void, T>(&p))
}

/// Compiles `expr` (tcpdump syntax) for a cooked `AF_PACKET` socket.
pub fn compile(expr: &str) -> Result<Vec<BpfInsn>, AgentError> {
    let c_expr = CString::new(expr).map_err(|_| err(expr, "contains a NUL byte"))?;
    // SAFETY: dlopen/dlsym with NUL-terminated names; the symbols are called with the
    // signatures of libpcap's public API (pcap/pcap.h) and the handle is closed before return.
    unsafe {
        let lib = LIBPCAP
            .iter()
            .map(|n| {
                let n = CString::new(*n).expect("no NUL");
                libc::dlopen(n.as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL)
            })
            .find(|h| !h.is_null())
            .ok_or_else(|| {
                err(
                    expr,
                    "compiling a filter needs libpcap (Debian: apt-get install libpcap0.8)",
                )
            })?;
        let f = (
            sym::<OpenDead>(lib, c"pcap_open_dead"),
            sym::<Compile>(lib, c"pcap_compile"),
            sym::<GetErr>(lib, c"pcap_geterr"),
            sym::<FreeCode>(lib, c"pcap_freecode"),
            sym::<Close>(lib, c"pcap_close"),
        );
        let (Some(open_dead), Some(compile), Some(geterr), Some(freecode), Some(close)) = f else {
            libc::dlclose(lib);
            return Err(err(expr, "the libpcap found lacks pcap_compile"));
        };
        let p = open_dead(DLT_LINUX_SLL, SNAPLEN);
        if p.is_null() {
            libc::dlclose(lib);
            return Err(err(expr, "pcap_open_dead failed"));
        }
        let mut prog = BpfProgram {
            len: 0,
            insns: std::ptr::null_mut(),
        };
        let res = if compile(p, &mut prog, c_expr.as_ptr(), 1, NETMASK_UNKNOWN) != 0 {
            let msg = geterr(p);
            let msg = if msg.is_null() {
                "syntax error".to_string()
            } else {
                CStr::from_ptr(msg).to_string_lossy().into_owned()
            };
            Err(err(expr, msg))
        } else {
            let insns = std::slice::from_raw_parts(prog.insns, prog.len as usize).to_vec();
            freecode(&mut prog);
            Ok(insns)
        };
        close(p);
        libc::dlclose(lib);
        let mut insns = res?;
        for i in &mut insns {
            cook(i).map_err(|why| err(expr, why))?;
        }
        Ok(insns)
    }
}

/// Rewrites one instruction compiled for `DLT_LINUX_SLL` so it runs on a cooked socket.
fn cook(i: &mut BpfInsn) -> Result<(), String> {
    let class = i.code & 0x07;
    let mode = i.code & 0xe0;
    if !(class == BPF_LD || class == BPF_LDX) || !matches!(mode, BPF_ABS | BPF_IND | BPF_MSH) {
        return Ok(());
    }
    if i.k >= SKF_AD_OFF as u32 {
        return Ok(()); // already an ancillary load
    }
    if i.k >= SLL_HDR_LEN {
        i.k -= SLL_HDR_LEN;
    } else if i.k == 0 {
        i.k = (SKF_AD_OFF + SKF_AD_PKTTYPE) as u32;
    } else if i.k == 14 {
        i.k = (SKF_AD_OFF + SKF_AD_PROTOCOL) as u32;
    } else {
        return Err(format!(
            "the filter reads link-layer header byte {} (e.g. `ether host`), which live capture \
             (cooked packets) does not have; filter on IP addresses and ports instead",
            i.k
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn libpcap_present() -> bool {
        match compile("tcp") {
            Err(AgentError::Filter { reason, .. }) if reason.contains("needs libpcap") => {
                eprintln!("SKIP: libpcap (libpcap0.8) is not installed");
                false
            }
            _ => true,
        }
    }

    #[test]
    fn compiles_and_cooks_offsets() {
        if !libpcap_present() {
            return;
        }
        let prog = compile("tcp port 8080").unwrap();
        assert!(!prog.is_empty());
        // The protocol check became the ancillary load; no load reads the 16-byte header.
        let loads: Vec<&BpfInsn> = prog
            .iter()
            .filter(|i| i.code & 0x07 <= BPF_LDX && matches!(i.code & 0xe0, BPF_ABS | BPF_IND))
            .collect();
        assert!(loads
            .iter()
            .any(|i| i.k == (SKF_AD_OFF + SKF_AD_PROTOCOL) as u32));
        // The IPv4 protocol byte (offset 9 of the IP header) is read at 9, not 25.
        assert!(loads.iter().any(|i| i.k == 9));
        assert!(!loads.iter().any(|i| i.k == 25));
    }

    #[test]
    fn bad_expressions_are_clear_errors() {
        if !libpcap_present() {
            return;
        }
        let e = compile("tcp prot 80").unwrap_err().to_string();
        assert!(e.contains("tcp prot 80"), "{e}");
        // Cooked packets have no Ethernet header: refused (by libpcap or by `cook`).
        let e = compile("ether host 01:02:03:04:05:06")
            .unwrap_err()
            .to_string();
        assert!(e.contains("ether host"), "{e}");
    }
}
