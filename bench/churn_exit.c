// The smallest process there is, for the churn workload's fastest mode: no
// libc, no dynamic loader, one page of code; it exits 0. Built static with
// -nostdlib (bench/CMakeLists.txt), for x86-64 and arm64.
#if defined(__x86_64__)
__attribute__((noreturn)) void _start(void)
{
	__asm__ volatile("syscall" : : "a"(60), "D"(0) : "rcx", "r11", "memory"); // exit(0)
	__builtin_unreachable();
}
#elif defined(__aarch64__)
__attribute__((noreturn)) void _start(void)
{
	register long nr __asm__("x8") = 93, code __asm__("x0") = 0;
	__asm__ volatile("svc #0" : : "r"(nr), "r"(code) : "memory"); // exit(0)
	__builtin_unreachable();
}
#else
#error "churn_exit: x86-64 and arm64 only"
#endif
