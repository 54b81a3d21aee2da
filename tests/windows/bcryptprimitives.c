/* Wine 8.0 has no bcryptprimitives.dll. Windows binaries built with Rust >= 1.78 (cryptography,
   which trustme needs) import ProcessPrng from it; this stand-in fills the buffer with
   RtlGenRandom (advapi32's SystemFunction036), in chunks a ULONG can count. Tests only. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE out, SIZE_T length) {
    const SIZE_T chunk = 1u << 30;
    for (SIZE_T done = 0; done < length; done += chunk) {
        SIZE_T n = length - done < chunk ? length - done : chunk;
        if (!SystemFunction036(out + done, (ULONG)n)) return FALSE;
    }
    return TRUE;
}
