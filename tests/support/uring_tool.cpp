// kt_uring_tool FILE PORT: opens and reads FILE, then connects to
// 127.0.0.1:PORT, all through io_uring (raw syscalls, no liburing): the
// evasion the io_uring hook must report. Exits 0 when every operation
// completed (the connect may be refused: it was still submitted).
#include <fcntl.h>
#include <linux/io_uring.h>
#include <netinet/in.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace
{

struct Ring {
	int fd = -1;
	unsigned *sq_tail, *sq_mask, *sq_array, *cq_head, *cq_tail, *cq_mask;
	io_uring_sqe *sqes;
	io_uring_cqe *cqes;
};

bool setup(Ring *r)
{
	io_uring_params p{};
	r->fd = static_cast<int>(syscall(__NR_io_uring_setup, 4, &p));
	if (r->fd < 0)
		return false;
	size_t sq_len = p.sq_off.array + p.sq_entries * sizeof(unsigned);
	size_t cq_len = p.cq_off.cqes + p.cq_entries * sizeof(io_uring_cqe);
	auto *sq = static_cast<char *>(mmap(nullptr, sq_len, PROT_READ | PROT_WRITE,
	                                    MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQ_RING));
	auto *cq = static_cast<char *>(mmap(nullptr, cq_len, PROT_READ | PROT_WRITE,
	                                    MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_CQ_RING));
	void *sqes = mmap(nullptr, p.sq_entries * sizeof(io_uring_sqe), PROT_READ | PROT_WRITE,
	                  MAP_SHARED | MAP_POPULATE, r->fd, IORING_OFF_SQES);
	if (sq == MAP_FAILED || cq == MAP_FAILED || sqes == MAP_FAILED)
		return false;
	r->sq_tail = reinterpret_cast<unsigned *>(sq + p.sq_off.tail);
	r->sq_mask = reinterpret_cast<unsigned *>(sq + p.sq_off.ring_mask);
	r->sq_array = reinterpret_cast<unsigned *>(sq + p.sq_off.array);
	r->cq_head = reinterpret_cast<unsigned *>(cq + p.cq_off.head);
	r->cq_tail = reinterpret_cast<unsigned *>(cq + p.cq_off.tail);
	r->cq_mask = reinterpret_cast<unsigned *>(cq + p.cq_off.ring_mask);
	r->cqes = reinterpret_cast<io_uring_cqe *>(cq + p.cq_off.cqes);
	r->sqes = static_cast<io_uring_sqe *>(sqes);
	return true;
}

// Submits one operation and waits for its result.
int run(Ring *r, const io_uring_sqe &op)
{
	unsigned tail = *r->sq_tail;
	unsigned i = tail & *r->sq_mask;
	r->sqes[i] = op;
	r->sq_array[i] = i;
	std::atomic_ref<unsigned>(*r->sq_tail).store(tail + 1, std::memory_order_release);
	if (syscall(__NR_io_uring_enter, r->fd, 1, 1, IORING_ENTER_GETEVENTS, nullptr, 0) < 0)
		return -1000;
	unsigned head = *r->cq_head;
	if (head == std::atomic_ref<unsigned>(*r->cq_tail).load(std::memory_order_acquire))
		return -1001;
	int res = r->cqes[head & *r->cq_mask].res;
	std::atomic_ref<unsigned>(*r->cq_head).store(head + 1, std::memory_order_release);
	return res;
}

} // namespace

int main(int argc, char **argv)
{
	if (argc != 3) {
		std::fprintf(stderr, "usage: %s FILE PORT\n", argv[0]);
		return 2;
	}
	Ring r;
	if (!setup(&r)) {
		std::perror("io_uring_setup");
		return 3;
	}
	io_uring_sqe op{};
	op.opcode = IORING_OP_OPENAT;
	op.fd = AT_FDCWD;
	op.addr = reinterpret_cast<uintptr_t>(argv[1]);
	op.open_flags = O_RDONLY;
	int fd = run(&r, op);
	if (fd < 0) {
		std::fprintf(stderr, "openat: %d\n", fd);
		return 4;
	}
	char buf[4096];
	op = {};
	op.opcode = IORING_OP_READ;
	op.fd = fd;
	op.addr = reinterpret_cast<uintptr_t>(buf);
	op.len = sizeof(buf);
	if (run(&r, op) < 0)
		return 5;
	std::memset(buf, 0, sizeof(buf));
	int s = socket(AF_INET, SOCK_STREAM, 0);
	sockaddr_in to{};
	to.sin_family = AF_INET;
	to.sin_port = htons(static_cast<uint16_t>(std::atoi(argv[2])));
	to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	op = {};
	op.opcode = IORING_OP_CONNECT;
	op.fd = s;
	op.addr = reinterpret_cast<uintptr_t>(&to);
	op.off = sizeof(to);
	int c = run(&r, op);
	if (c < -999)
		return 6;
	return 0;
}
