// SPDX-License-Identifier: GPL-2.0
// wiretrail eBPF TLS plaintext capture: uprobes on OpenSSL SSL_{read,write}[_ex] plus raw
// tracepoints that, while a thread is inside an SSL call, resolve the socket's addresses
// in-kernel with CO-RE: sock:sock_{send,recv}_length (Linux >= 6.4, the struct sock directly),
// else sys_enter (task->files->fdt->fd[fd]->private_data->sk).
// GPL, unlike the rest of wiretrail (Apache-2.0): the kernel lets only GPL-compatible programs
// call the helpers used here (bpf_probe_read_user, ...).
// Self-contained on purpose (no libbpf headers needed): only clang is required to build it.
// x86_64 only (pt_regs layout, syscall numbers).

typedef unsigned char __u8;
typedef unsigned short __u16;
typedef unsigned int __u32;
typedef unsigned long long __u64;
typedef int __s32;
typedef long long __s64;

#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int(*name)[val]
#define __type(name, val) typeof(val) *name
#define __always_inline inline __attribute__((always_inline))
#define CORE __attribute__((preserve_access_index))

enum {
	BPF_MAP_TYPE_PERCPU_ARRAY = 6,
	BPF_MAP_TYPE_LRU_HASH = 9,
	BPF_MAP_TYPE_RINGBUF = 27,
};
#define BPF_ANY 0

static void *(*bpf_map_lookup_elem)(void *map, const void *key) = (void *)1;
static long (*bpf_map_update_elem)(void *map, const void *key, const void *value, __u64 flags) = (void *)2;
static long (*bpf_map_delete_elem)(void *map, const void *key) = (void *)3;
static __u64 (*bpf_ktime_get_ns)(void) = (void *)5;
static __u64 (*bpf_get_current_pid_tgid)(void) = (void *)14;
static long (*bpf_get_current_comm)(void *buf, __u32 size) = (void *)16;
static __u64 (*bpf_get_current_task)(void) = (void *)35;
static __u64 (*bpf_get_current_cgroup_id)(void) = (void *)80;
static long (*bpf_probe_read_user)(void *dst, __u32 size, const void *src) = (void *)112;
static long (*bpf_probe_read_kernel)(void *dst, __u32 size, const void *src) = (void *)113;
static long (*bpf_ringbuf_output)(void *rb, void *data, __u64 size, __u64 flags) = (void *)130;
static __u64 (*bpf_ringbuf_query)(void *rb, __u64 flags) = (void *)134;
#define BPF_RB_NO_WAKEUP 1
#define BPF_RB_FORCE_WAKEUP 2
#define BPF_RB_AVAIL_DATA 0

/* x86_64 user/kernel register frame (uprobe context and sys_enter's regs argument). */
struct pt_regs {
	unsigned long r15, r14, r13, r12, bp, bx, r11, r10, r9, r8, ax, cx, dx, si, di, orig_ax, ip, cs,
		flags, sp, ss;
};
struct bpf_raw_tracepoint_args {
	__u64 args[0];
};

/* Minimal CO-RE views of kernel types: clang records field accesses, aya relocates them
 * against /sys/kernel/btf/vmlinux at load time (anonymous unions are matched by name). */
struct in6_addr {
	__u8 s6_addr[16];
} CORE;
struct sock_common {
	__u32 skc_daddr;
	__u32 skc_rcv_saddr;
	__u16 skc_dport;
	__u16 skc_num;
	unsigned short skc_family;
	struct in6_addr skc_v6_daddr;
	struct in6_addr skc_v6_rcv_saddr;
} CORE;
struct sock {
	struct sock_common __sk_common;
} CORE;
struct socket {
	struct sock *sk;
} CORE;
struct inode {
	unsigned short i_mode;
} CORE;
struct file {
	struct inode *f_inode;
	void *private_data;
} CORE;
struct fdtable {
	unsigned int max_fds;
	struct file **fd;
} CORE;
struct files_struct {
	struct fdtable *fdt;
} CORE;
struct task_struct {
	struct files_struct *files;
} CORE;

#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define AF_INET 2
#define AF_INET6 10

/* Upper bound of one ring-buffer record's payload; larger calls are split into chunks. */
#define CHUNK 16384
#define MAX_CHUNKS 4
/* Pending ring-buffer bytes that make the producer wake the consumer up (ring is 8 MiB). */
#define WAKE_BYTES (512 << 10)

/* Set by userspace before load (aya set_global): bytes captured per call, <= CHUNK*MAX_CHUNKS. */
volatile const __u32 max_capture = CHUNK;

struct addrs {
	__u16 family; /* 0 = unknown */
	__u16 sport;  /* host order */
	__u16 dport;  /* host order */
	__u16 _pad;
	__u8 saddr[16]; /* network order; IPv4 in the first 4 bytes */
	__u8 daddr[16];
};

struct active {
	__u64 ssl;
	__u64 buf;
	__u64 lenp; /* size_t * of the _ex variants, 0 otherwise */
	__s32 fd;   /* -1 until a socket syscall was seen */
	__u8 write;
	__u8 _pad[3];
	struct addrs a;
};

struct conn_key {
	__u64 ssl;
	__u32 tgid;
	__u32 _pad;
};
struct conn_val {
	__s32 fd;
	__u32 _pad;
	struct addrs a;
};

/* Layout shared with userspace (src/ebpf/mod.rs: RawHeader). */
struct record {
	__u64 ts;
	__u64 cgroup;
	__u64 ssl;
	__u32 pid;
	__u32 tid;
	__u32 len;	 /* original length of the SSL call */
	__u32 off;	 /* offset of this chunk */
	__u32 chunk_len; /* bytes of data in this record */
	__s32 fd;
	struct addrs a;
	__u8 write;
	__u8 last; /* no further chunk follows for this call */
	__u8 _pad[6];
	char comm[16];
	__u8 data[CHUNK];
};

_Static_assert(__builtin_offsetof(struct record, a) == 48, "record layout (mod.rs)");
_Static_assert(__builtin_offsetof(struct record, write) == 88, "record layout (mod.rs)");
_Static_assert(__builtin_offsetof(struct record, comm) == 96, "record layout (mod.rs)");
_Static_assert(__builtin_offsetof(struct record, data) == 112, "record layout (mod.rs)");

/* LRU: a thread killed inside an SSL call never deletes its entry. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 16384);
	__type(key, __u64);
	__type(value, struct active);
} active SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, struct conn_key);
	__type(value, struct conn_val);
} conns SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 8 << 20);
} events SEC(".maps");

/* [0] records the ring buffer could not take, [1] calls whose data could not be read,
 * [2] socket records the `sockets` ring buffer could not take. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 3);
	__type(key, __u32);
	__type(value, __u64);
} counters SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct record);
} scratch SEC(".maps");

static __always_inline void count(__u32 idx)
{
	__u64 *v = bpf_map_lookup_elem(&counters, &idx);
	if (v)
		__sync_fetch_and_add(v, 1);
}

static __always_inline int enter(struct pt_regs *ctx, __u8 write, __u8 ex)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct active a = {};
	a.ssl = ctx->di;
	a.buf = ctx->si;
	a.lenp = ex ? ctx->cx : 0;
	a.fd = -1;
	a.write = write;
	bpf_map_update_elem(&active, &id, &a, BPF_ANY);
	return 0;
}

static __always_inline int leave(struct pt_regs *ctx, __u8 ex)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct active *a = bpf_map_lookup_elem(&active, &id);
	if (!a)
		return 0;
	long ret = (long)ctx->ax;
	__u64 len = 0;
	if (ex) {
		if ((int)ret != 1 || bpf_probe_read_user(&len, sizeof(len), (void *)a->lenp) != 0)
			goto out;
	} else {
		if ((int)ret <= 0)
			goto out;
		len = (__u32)(int)ret;
	}
	if (len == 0)
		goto out;

	__u32 zero = 0;
	struct record *r = bpf_map_lookup_elem(&scratch, &zero);
	if (!r)
		goto out;

	struct conn_key ck = {.ssl = a->ssl, .tgid = id >> 32};
	if (a->a.family) {
		struct conn_val cv = {.fd = a->fd, .a = a->a};
		bpf_map_update_elem(&conns, &ck, &cv, BPF_ANY);
		r->a = a->a;
		r->fd = a->fd;
	} else {
		struct conn_val *cv = bpf_map_lookup_elem(&conns, &ck);
		if (cv) {
			r->a = cv->a;
			r->fd = cv->fd;
		} else {
			__builtin_memset(&r->a, 0, sizeof(r->a));
			r->fd = a->fd;
		}
	}
	r->ts = bpf_ktime_get_ns();
	r->cgroup = bpf_get_current_cgroup_id();
	r->ssl = a->ssl;
	r->pid = id >> 32;
	r->tid = (__u32)id;
	r->len = len > 0xffffffffULL ? 0xffffffff : (__u32)len;
	r->write = a->write;
	bpf_get_current_comm(r->comm, sizeof(r->comm));

	__u64 cap = len < max_capture ? len : max_capture;
	__u64 buf = a->buf;
	for (__u32 i = 0; i < MAX_CHUNKS; i++) {
		__u64 off = (__u64)i * CHUNK;
		if (off >= cap)
			break;
		__u32 n = cap - off > CHUNK ? CHUNK : (__u32)(cap - off);
		r->off = off;
		r->chunk_len = n;
		r->last = off + n >= cap;
		if (n == 0 || n > CHUNK)
			break;
		if (bpf_probe_read_user(r->data, n, (void *)(buf + off)) != 0) {
			count(1);
			break;
		}
		__u64 size = __builtin_offsetof(struct record, data) + (__u64)n;
		if (size > sizeof(*r))
			break;
		/* A wakeup per record costs ~7 us in the probe and a context switch in the agent,
		 * so the consumer polls on a short tick and is only woken when data piles up. */
		__u64 flags = bpf_ringbuf_query(&events, BPF_RB_AVAIL_DATA) >= WAKE_BYTES
				      ? BPF_RB_FORCE_WAKEUP
				      : BPF_RB_NO_WAKEUP;
		if (bpf_ringbuf_output(&events, r, size, flags) != 0) {
			count(0);
			break;
		}
	}
out:
	bpf_map_delete_elem(&active, &id);
	return 0;
}

SEC("uprobe/SSL_write") int ssl_write_enter(struct pt_regs *ctx) { return enter(ctx, 1, 0); }
SEC("uprobe/SSL_write_ex") int ssl_write_ex_enter(struct pt_regs *ctx) { return enter(ctx, 1, 1); }
SEC("uprobe/SSL_read") int ssl_read_enter(struct pt_regs *ctx) { return enter(ctx, 0, 0); }
SEC("uprobe/SSL_read_ex") int ssl_read_ex_enter(struct pt_regs *ctx) { return enter(ctx, 0, 1); }
SEC("uretprobe/SSL_write") int ssl_write_leave(struct pt_regs *ctx) { return leave(ctx, 0); }
SEC("uretprobe/SSL_write_ex") int ssl_write_ex_leave(struct pt_regs *ctx) { return leave(ctx, 1); }
SEC("uretprobe/SSL_read") int ssl_read_leave(struct pt_regs *ctx) { return leave(ctx, 0); }
SEC("uretprobe/SSL_read_ex") int ssl_read_ex_leave(struct pt_regs *ctx) { return leave(ctx, 1); }

/* A freed SSL * can be reused for a new connection: forget its addresses. */
SEC("uprobe/SSL_free") int ssl_free_enter(struct pt_regs *ctx)
{
	struct conn_key ck = {.ssl = ctx->di, .tgid = bpf_get_current_pid_tgid() >> 32};
	bpf_map_delete_elem(&conns, &ck);
	return 0;
}

#define RD(dst, src) bpf_probe_read_kernel(&(dst), sizeof(dst), &(src))

/* Fills `out` from a kernel socket's common part; 0 on success. */
static __always_inline int sk_addrs(struct sock *sk, struct addrs *out)
{
	unsigned short family = 0;
	__u16 dport = 0, sport = 0;
	if (RD(family, sk->__sk_common.skc_family))
		return -1;
	RD(dport, sk->__sk_common.skc_dport);
	RD(sport, sk->__sk_common.skc_num);
	if (family == AF_INET) {
		RD(*(__u32 *)out->saddr, sk->__sk_common.skc_rcv_saddr);
		RD(*(__u32 *)out->daddr, sk->__sk_common.skc_daddr);
	} else if (family == AF_INET6) {
		RD(out->saddr, sk->__sk_common.skc_v6_rcv_saddr);
		RD(out->daddr, sk->__sk_common.skc_v6_daddr);
	} else {
		return -1;
	}
	out->family = family;
	out->sport = sport;
	out->dport = __builtin_bswap16(dport);
	return 0;
}

/* Fills `out` from the socket behind `fd` of the current task; 0 on success. */
static __always_inline int fd_addrs(int fd, struct addrs *out)
{
	struct task_struct *task = (struct task_struct *)bpf_get_current_task();
	struct files_struct *files = 0;
	struct fdtable *fdt = 0;
	struct file **fds = 0;
	struct file *f = 0;
	struct inode *ino = 0;
	struct socket *sock = 0;
	struct sock *sk = 0;
	unsigned int max_fds = 0;
	unsigned short mode = 0;

	if (RD(files, task->files) || !files || RD(fdt, files->fdt) || !fdt)
		return -1;
	if (RD(max_fds, fdt->max_fds) || (unsigned int)fd >= max_fds || RD(fds, fdt->fd) || !fds)
		return -1;
	if (RD(f, fds[fd]) || !f || RD(ino, f->f_inode) || !ino || RD(mode, ino->i_mode))
		return -1;
	if ((mode & S_IFMT) != S_IFSOCK)
		return -1;
	if (RD(sock, f->private_data) || !sock || RD(sk, sock->sk) || !sk)
		return -1;
	return sk_addrs(sk, out);
}

/* Preferred address hook: the sock:sock_{send,recv}_length tracepoints (Linux >= 6.4) fire in
 * the calling thread for socket I/O only, with the struct sock * as first argument. Raw
 * tracepoints need neither tracefs nor kprobes; fentry was EPERM on the kernel we developed on. */
static __always_inline int on_sock_io(struct sock *sk)
{
	__u64 id = bpf_get_current_pid_tgid();
	struct active *a = bpf_map_lookup_elem(&active, &id);
	if (!a || a->a.family || !sk)
		return 0;
	struct addrs ad = {};
	if (sk_addrs(sk, &ad) == 0)
		a->a = ad;
	return 0;
}

SEC("raw_tracepoint/sock_send_length") int sock_send(struct bpf_raw_tracepoint_args *ctx)
{
	return on_sock_io((struct sock *)ctx->args[0]);
}
SEC("raw_tracepoint/sock_recv_length") int sock_recv(struct bpf_raw_tracepoint_args *ctx)
{
	return on_sock_io((struct sock *)ctx->args[0]);
}

/* Fallback address hook for older kernels: every syscall of every task runs it (~130 ns each,
 * measured), but it also yields the fd. */
/* x86_64 syscall numbers whose first argument is the socket fd OpenSSL's BIO uses. */
#define NR_read 0
#define NR_write 1
#define NR_readv 19
#define NR_writev 20
#define NR_sendto 44
#define NR_recvfrom 45
#define NR_sendmsg 46
#define NR_recvmsg 47

SEC("raw_tracepoint/sys_enter") int sys_enter(struct bpf_raw_tracepoint_args *ctx)
{
	long nr = (long)ctx->args[1];
	if (nr != NR_read && nr != NR_write && nr != NR_readv && nr != NR_writev && nr != NR_sendto &&
	    nr != NR_recvfrom && nr != NR_sendmsg && nr != NR_recvmsg)
		return 0;
	__u64 id = bpf_get_current_pid_tgid();
	struct active *a = bpf_map_lookup_elem(&active, &id);
	if (!a || a->a.family)
		return 0;
	struct pt_regs *regs = (struct pt_regs *)ctx->args[0];
	unsigned long fd = 0;
	if (bpf_probe_read_kernel(&fd, sizeof(fd), &regs->di))
		return 0;
	struct addrs ad = {};
	if (fd_addrs((int)fd, &ad) == 0) {
		a->a = ad;
		a->fd = (int)fd;
	}
	return 0;
}

/* Socket ownership for the AF_PACKET pipeline: which process (cgroup) connected or listens on
 * a TCP socket, so packets of a host-network pod's sockets can be named after the pod. The
 * raw tracepoint sock:inet_sock_set_state(sk, oldstate, newstate) needs no kprobes.
 * connect() enters SYN_SENT in process context but before the ephemeral port is chosen
 * (inet_hash_connect runs after), so the owner is remembered per socket and the record is
 * sent when SYN_SENT → ESTABLISHED (softirq, addresses complete). listen() is reported at
 * LISTEN (process context, port bound). CLOSE is reported only for sockets reported before. */
#define TCP_ESTABLISHED 1
#define TCP_SYN_SENT 2
#define TCP_CLOSE 7
#define TCP_LISTEN 10
#define SOCK_CONNECT 1
#define SOCK_LISTEN 2
#define SOCK_CLOSE 3

struct owner {
	__u64 cgroup;
	__u32 pid;
	__u32 _pad;
};

/* Layout shared with userspace (sockets.rs). */
struct sock_record {
	__u64 ts;
	__u64 cgroup;
	__u64 sk; /* identifies the socket until its CLOSE record */
	__u32 pid;
	__u8 kind;
	__u8 _pad[3];
	struct addrs a;
};

_Static_assert(__builtin_offsetof(struct sock_record, a) == 32, "sock_record layout (sockets.rs)");
_Static_assert(sizeof(struct sock_record) == 72, "sock_record layout (sockets.rs)");

/* LRU: a socket whose CLOSE was missed (e.g. loaded mid-connection) ages out. */
struct {
	__uint(type, BPF_MAP_TYPE_LRU_HASH);
	__uint(max_entries, 65536);
	__type(key, __u64);
	__type(value, struct owner);
} owners SEC(".maps");

struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1 << 20);
} sockets SEC(".maps");

static __always_inline void sock_emit(struct sock *sk, __u8 kind, const struct owner *o)
{
	struct sock_record r = {};
	r.ts = bpf_ktime_get_ns();
	r.cgroup = o->cgroup;
	r.pid = o->pid;
	r.sk = (__u64)sk;
	r.kind = kind;
	if (sk_addrs(sk, &r.a) != 0 && kind != SOCK_CLOSE)
		return;
	if (bpf_ringbuf_output(&sockets, &r, sizeof(r), 0) != 0)
		count(2);
}

SEC("raw_tracepoint/inet_sock_set_state") int sock_state(struct bpf_raw_tracepoint_args *ctx)
{
	struct sock *sk = (struct sock *)ctx->args[0];
	int oldstate = (int)ctx->args[1];
	int newstate = (int)ctx->args[2];
	__u64 key = (__u64)sk;
	if (newstate == TCP_SYN_SENT || newstate == TCP_LISTEN) {
		struct owner o = {.cgroup = bpf_get_current_cgroup_id(),
				  .pid = bpf_get_current_pid_tgid() >> 32};
		bpf_map_update_elem(&owners, &key, &o, BPF_ANY);
		if (newstate == TCP_LISTEN)
			sock_emit(sk, SOCK_LISTEN, &o);
		return 0;
	}
	if (newstate == TCP_ESTABLISHED && oldstate == TCP_SYN_SENT) {
		struct owner *o = bpf_map_lookup_elem(&owners, &key);
		if (o)
			sock_emit(sk, SOCK_CONNECT, o);
		return 0;
	}
	if (newstate == TCP_CLOSE) {
		struct owner *o = bpf_map_lookup_elem(&owners, &key);
		if (!o)
			return 0;
		struct owner copy = *o;
		bpf_map_delete_elem(&owners, &key);
		sock_emit(sk, SOCK_CLOSE, &copy);
	}
	return 0;
}

char LICENSE[] SEC("license") = "GPL";
