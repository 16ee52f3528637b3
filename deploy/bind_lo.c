/* LD_PRELOAD shim: bind(INADDR_ANY / in6addr_any) becomes bind(127.0.0.1 / ::1).
 * Orthanc 1.10.1 and dcmtk's storescp cannot choose their listen address; behind pacsgate
 * the PACS must listen on loopback only, or its plain DICOM port bypasses the gateway. Built by deploy/quickstart.sh and the tests:
 *   gcc -shared -fPIC -O2 -o bind_lo.so bind_lo.c -ldl */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <dlfcn.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*bind_fn)(int, const struct sockaddr *, socklen_t);

int bind(int fd, const struct sockaddr *sa, socklen_t len) {
    static bind_fn real;
    if (!real) real = (bind_fn)dlsym(RTLD_NEXT, "bind");
    if (sa && sa->sa_family == AF_INET && len >= (socklen_t)sizeof(struct sockaddr_in)) {
        struct sockaddr_in a;
        memcpy(&a, sa, sizeof a);
        if (a.sin_addr.s_addr == htonl(INADDR_ANY)) a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        return real(fd, (const struct sockaddr *)&a, sizeof a);
    }
    if (sa && sa->sa_family == AF_INET6 && len >= (socklen_t)sizeof(struct sockaddr_in6)) {
        struct sockaddr_in6 a;
        memcpy(&a, sa, sizeof a);
        if (!memcmp(&a.sin6_addr, &in6addr_any, sizeof a.sin6_addr)) a.sin6_addr = in6addr_loopback;
        return real(fd, (const struct sockaddr *)&a, sizeof a);
    }
    return real(fd, sa, len);
}
