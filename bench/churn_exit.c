// The smallest process there is, for the churn workload's fastest mode: no
// libc, no dynamic loader, one page of code; it exits 0. Built static with
// -nostdlib (bench/CMakeLists.txt), for x86-64 and arm64.
#if defined(__x86_64__)
__attribute__((noreturn)) void _start(void)
{
	__asm__ volatile("mov $60, %eax\n\txor %edi, %edi\n\tsyscall"); // exit(0)
	__builtin_unreachable();
}
#elif defined(__aarch64__)
__attribute__((noreturn)) void _start(void)
{
	__asm__ volatile("mov x8, #93\n\tmov x0, #0\n\tsvc #0"); // exit(0)
	__builtin_unreachable();
}
#else
#error "churn_exit: x86-64 and arm64 only"
#endif
