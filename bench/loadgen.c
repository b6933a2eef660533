/*
 * loadgen: HTTP/1.1 load generator for an AF_UNIX socket (an engine API
 * socket, or sockproxy in front of one). Standard C + POSIX only.
 *
 * It must stay much cheaper than what it measures: one blocking thread per
 * connection, no pipelining (each connection writes one request, reads the
 * whole response, repeats), 1 MiB buffers for bulk transfers.
 *
 * Modes (each prints one JSON object on one line to stdout):
 *
 *   rps       closed loop of GET --path on --conns keep-alive connections for
 *             --duration seconds: requests/s and latency percentiles.
 *   latency   --count sequential GET --path on one keep-alive connection
 *             (after --warmup unmeasured ones): latency percentiles.
 *   download  one GET --path; counts body bytes whatever the framing
 *             (Content-Length, chunked, or until close).
 *   upload    one PUT --path whose body is a valid tar streamed from memory:
 *             a ustar header for --tar-name, --size bytes of data, padding,
 *             two zero blocks. Content-Length is sent up front.
 *
 * Exit status: 0 when every measured response was 2xx, 1 otherwise, 2 on
 * usage errors.
 *
 * Build: cc -O2 -pthread -o bench/loadgen bench/loadgen.c
 */
#define _GNU_SOURCE
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#define BUF_SIZE (1u << 20)
#define MAX_HEAD (64u * 1024u)
#define ERR_SNIPPET 200

/* ---- options ---------------------------------------------------------- */

static const char *opt_socket;
static const char *opt_mode;
static const char *opt_path;
static const char *opt_method;
static const char *opt_tar_name = "bigfile";
static int opt_conns = 1;
static double opt_duration = 5.0;
static long opt_count = 100;
static long opt_warmup = 10;
static uint64_t opt_size = 256ull << 20;

/* ---- time ------------------------------------------------------------- */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- connection with a read buffer ------------------------------------ */

struct conn {
    int fd;
    char *buf;
    size_t start, end; /* unread bytes are buf[start:end] */
    int eof;
};

static int conn_open(struct conn *c)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(opt_socket) >= sizeof sa.sun_path) {
        fprintf(stderr, "loadgen: socket path too long: %s\n", opt_socket);
        return -1;
    }
    strcpy(sa.sun_path, opt_socket);
    c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        perror("loadgen: socket");
        return -1;
    }
    if (connect(c->fd, (struct sockaddr *)&sa, sizeof sa) < 0) {
        fprintf(stderr, "loadgen: connect %s: %s\n", opt_socket, strerror(errno));
        close(c->fd);
        c->fd = -1;
        return -1;
    }
    if (c->buf == NULL && (c->buf = malloc(BUF_SIZE)) == NULL) {
        perror("loadgen: malloc");
        exit(1);
    }
    c->start = c->end = 0;
    c->eof = 0;
    return 0;
}

static void conn_close(struct conn *c)
{
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
}

/* Read more bytes into the buffer (compacting it first). 0 ok, -1 error/EOF. */
static int conn_fill(struct conn *c)
{
    if (c->start > 0) {
        memmove(c->buf, c->buf + c->start, c->end - c->start);
        c->end -= c->start;
        c->start = 0;
    }
    if (c->end == BUF_SIZE)
        return -1;
    for (;;) {
        ssize_t n = read(c->fd, c->buf + c->end, BUF_SIZE - c->end);
        if (n > 0) {
            c->end += (size_t)n;
            return 0;
        }
        if (n == 0) {
            c->eof = 1;
            return -1;
        }
        if (errno != EINTR)
            return -1;
    }
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* ---- HTTP response parsing -------------------------------------------- */

enum framing { FR_NONE, FR_LENGTH, FR_CHUNKED, FR_CLOSE };
static const char *framing_name[] = {"none", "content-length", "chunked", "until-close"};

struct response {
    int status;
    enum framing framing;
    uint64_t length; /* for FR_LENGTH */
    int keep_alive;
    uint64_t body_bytes;
    char snippet[ERR_SNIPPET + 1]; /* start of the body, for error messages */
    size_t snippet_len;
};

static const char *find_crlfcrlf(const char *p, size_t n)
{
    return memmem(p, n, "\r\n\r\n", 4);
}

static void header_value(const char *line, size_t len, const char **v, size_t *vlen)
{
    const char *colon = memchr(line, ':', len);
    const char *e = line + len;
    const char *s = colon ? colon + 1 : e;
    while (s < e && (*s == ' ' || *s == '\t'))
        s++;
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
        e--;
    *v = s;
    *vlen = (size_t)(e - s);
}

static int header_is(const char *line, size_t len, const char *name)
{
    size_t n = strlen(name);
    return len > n && line[n] == ':' && strncasecmp(line, name, n) == 0;
}

static int contains_token(const char *v, size_t vlen, const char *tok)
{
    size_t n = strlen(tok);
    for (size_t i = 0; i + n <= vlen; i++)
        if (strncasecmp(v + i, tok, n) == 0)
            return 1;
    return 0;
}

/* Read one response head. 0 ok, -1 error. Skips 1xx interim responses. */
static int read_head(struct conn *c, struct response *r, int head_request)
{
    for (;;) {
        const char *end;
        while ((end = find_crlfcrlf(c->buf + c->start, c->end - c->start)) == NULL) {
            if (c->end - c->start > MAX_HEAD) {
                fprintf(stderr, "loadgen: response head too large\n");
                return -1;
            }
            if (conn_fill(c) < 0)
                return -1;
        }
        const char *p = c->buf + c->start;
        size_t head_len = (size_t)(end - p) + 4;
        memset(r, 0, sizeof *r);
        if (head_len < 12 || strncmp(p, "HTTP/1.", 7) != 0) {
            fprintf(stderr, "loadgen: bad status line\n");
            return -1;
        }
        r->status = atoi(p + 9);
        int http10 = p[7] == '0';
        r->keep_alive = !http10;
        int chunked = 0, have_len = 0;
        const char *line = memchr(p, '\n', head_len) + 1;
        while (line < end) {
            const char *eol = memchr(line, '\r', (size_t)(end + 2 - line));
            size_t len = (size_t)(eol - line);
            const char *v;
            size_t vlen;
            if (header_is(line, len, "content-length")) {
                header_value(line, len, &v, &vlen);
                r->length = strtoull(v, NULL, 10);
                have_len = 1;
            } else if (header_is(line, len, "transfer-encoding")) {
                header_value(line, len, &v, &vlen);
                if (contains_token(v, vlen, "chunked"))
                    chunked = 1;
            } else if (header_is(line, len, "connection")) {
                header_value(line, len, &v, &vlen);
                if (contains_token(v, vlen, "close"))
                    r->keep_alive = 0;
                else if (contains_token(v, vlen, "keep-alive"))
                    r->keep_alive = 1;
            }
            line = eol + 2;
        }
        c->start += head_len;
        if (r->status >= 100 && r->status < 200)
            continue;
        if (head_request || r->status == 204 || r->status == 304)
            r->framing = FR_NONE;
        else if (chunked)
            r->framing = FR_CHUNKED;
        else if (have_len)
            r->framing = FR_LENGTH;
        else {
            r->framing = FR_CLOSE;
            r->keep_alive = 0;
        }
        return 0;
    }
}

static void take(struct conn *c, struct response *r, size_t n)
{
    if (r->snippet_len < ERR_SNIPPET) {
        size_t k = ERR_SNIPPET - r->snippet_len;
        if (k > n)
            k = n;
        memcpy(r->snippet + r->snippet_len, c->buf + c->start, k);
        r->snippet_len += k;
        r->snippet[r->snippet_len] = 0;
    }
    c->start += n;
    r->body_bytes += n;
}

/* Read (and discard) exactly n body bytes. */
static int read_exact(struct conn *c, struct response *r, uint64_t n)
{
    while (n > 0) {
        if (c->start == c->end) {
            c->start = c->end = 0;
            if (conn_fill(c) < 0)
                return -1;
        }
        size_t avail = c->end - c->start;
        size_t k = avail < n ? avail : (size_t)n;
        take(c, r, k);
        n -= k;
    }
    return 0;
}

/* Read a CRLF-terminated line; returns pointer into the buffer (valid until
 * the next fill) and advances past it. */
static const char *read_line(struct conn *c, size_t *len)
{
    const char *nl;
    while ((nl = memchr(c->buf + c->start, '\n', c->end - c->start)) == NULL) {
        if (c->end - c->start > MAX_HEAD || conn_fill(c) < 0)
            return NULL;
    }
    const char *line = c->buf + c->start;
    *len = (size_t)(nl - line);
    if (*len > 0 && line[*len - 1] == '\r')
        (*len)--;
    c->start = (size_t)(nl - c->buf) + 1;
    return line;
}

static int read_body(struct conn *c, struct response *r)
{
    switch (r->framing) {
    case FR_NONE:
        return 0;
    case FR_LENGTH:
        return read_exact(c, r, r->length);
    case FR_CLOSE:
        for (;;) {
            if (c->start < c->end)
                take(c, r, c->end - c->start);
            c->start = c->end = 0;
            if (conn_fill(c) < 0)
                return c->eof ? 0 : -1;
        }
    case FR_CHUNKED:
        for (;;) {
            size_t len;
            const char *line = read_line(c, &len);
            if (line == NULL)
                return -1;
            char tmp[32];
            size_t k = len < sizeof tmp - 1 ? len : sizeof tmp - 1;
            memcpy(tmp, line, k);
            tmp[k] = 0;
            char *endp;
            uint64_t size = strtoull(tmp, &endp, 16);
            if (endp == tmp) {
                fprintf(stderr, "loadgen: bad chunk size line\n");
                return -1;
            }
            if (size == 0) {
                /* trailers until an empty line */
                for (;;) {
                    line = read_line(c, &len);
                    if (line == NULL)
                        return -1;
                    if (len == 0)
                        return 0;
                }
            }
            if (read_exact(c, r, size) < 0)
                return -1;
            line = read_line(c, &len);
            if (line == NULL || len != 0) {
                fprintf(stderr, "loadgen: missing CRLF after chunk\n");
                return -1;
            }
        }
    }
    return -1;
}

/* ---- request/response loops (rps, latency) ---------------------------- */

struct samples {
    double *v;
    size_t n, cap;
};

static void samples_add(struct samples *s, double x)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 4096;
        s->v = realloc(s->v, s->cap * sizeof *s->v);
        if (s->v == NULL) {
            perror("loadgen: realloc");
            exit(1);
        }
    }
    s->v[s->n++] = x;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double percentile(const double *v, size_t n, double p)
{
    if (n == 0)
        return 0.0;
    size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
    return v[i];
}

struct worker {
    pthread_t thread;
    struct conn conn;
    char request[1024];
    size_t request_len;
    long count;        /* stop after this many (latency mode), or -1 */
    long warmup;       /* unmeasured requests first */
    int timed;         /* rps mode: stop at shared_deadline */
    double started, stopped;
    long ok, errors, reconnects;
    int last_bad_status;
    struct samples lat;
    int failed;
};

static pthread_barrier_t start_barrier;
static volatile double shared_deadline;
static volatile double shared_start;

/* One request/response exchange. 0 ok, -1 broken connection. */
static int exchange(struct worker *w, struct response *r)
{
    if (w->conn.fd < 0) {
        if (conn_open(&w->conn) < 0)
            return -1;
        w->reconnects++;
    }
    if (write_all(w->conn.fd, w->request, w->request_len) < 0)
        return -1;
    if (read_head(&w->conn, r, 0) < 0 || read_body(&w->conn, r) < 0)
        return -1;
    if (!r->keep_alive)
        conn_close(&w->conn);
    return 0;
}

static void *worker_run(void *arg)
{
    struct worker *w = arg;
    struct response r;
    if (conn_open(&w->conn) < 0)
        w->failed = 1;
    for (long i = 0; i < w->warmup && !w->failed; i++)
        if (exchange(w, &r) < 0)
            w->failed = 1;
    pthread_barrier_wait(&start_barrier); /* connected and warmed up */
    pthread_barrier_wait(&start_barrier); /* main has set the clock */
    if (w->failed)
        return NULL;
    w->started = shared_start;
    double deadline = shared_deadline;
    for (long i = 0; w->count < 0 || i < w->count; i++) {
        double t0 = now_s();
        if (w->timed && t0 >= deadline)
            break;
        if (exchange(w, &r) < 0) {
            w->errors++;
            conn_close(&w->conn);
            if (w->errors > 100) {
                w->failed = 1;
                break;
            }
            continue;
        }
        double t1 = now_s();
        if (r.status >= 200 && r.status < 300) {
            w->ok++;
            samples_add(&w->lat, t1 - t0);
        } else {
            w->errors++;
            w->last_bad_status = r.status;
        }
    }
    w->stopped = now_s();
    conn_close(&w->conn);
    return NULL;
}

static int run_requests(int rps_mode)
{
    int n = rps_mode ? opt_conns : 1;
    struct worker *ws = calloc((size_t)n, sizeof *ws);
    if (ws == NULL) {
        perror("loadgen: calloc");
        return 1;
    }
    pthread_barrier_init(&start_barrier, NULL, (unsigned)n + 1);
    for (int i = 0; i < n; i++) {
        struct worker *w = &ws[i];
        w->conn.fd = -1;
        w->request_len = (size_t)snprintf(w->request, sizeof w->request,
                                          "%s %s HTTP/1.1\r\nHost: localhost\r\n"
                                          "User-Agent: sockproxy-loadgen\r\n\r\n",
                                          opt_method, opt_path);
        w->count = rps_mode ? -1 : opt_count;
        w->warmup = opt_warmup;
        w->timed = rps_mode;
        if (pthread_create(&w->thread, NULL, worker_run, w) != 0) {
            perror("loadgen: pthread_create");
            return 1;
        }
    }
    /* Wait until all connections are open and warmed up, then start the clock. */
    pthread_barrier_wait(&start_barrier);
    shared_start = now_s();
    shared_deadline = shared_start + opt_duration;
    pthread_barrier_wait(&start_barrier);
    double t_start = shared_start;
    long ok = 0, errors = 0, reconnects = 0, failed = 0;
    int last_bad = 0;
    double t_end = t_start;
    struct samples all = {0};
    for (int i = 0; i < n; i++) {
        struct worker *w = &ws[i];
        pthread_join(w->thread, NULL);
        ok += w->ok;
        errors += w->errors;
        reconnects += w->reconnects;
        failed += w->failed;
        if (w->last_bad_status)
            last_bad = w->last_bad_status;
        if (w->stopped > t_end)
            t_end = w->stopped;
        for (size_t j = 0; j < w->lat.n; j++)
            samples_add(&all, w->lat.v[j]);
    }
    qsort(all.v, all.n, sizeof *all.v, cmp_double);
    double elapsed = t_end - t_start;
    double sum = 0;
    for (size_t j = 0; j < all.n; j++)
        sum += all.v[j];
    printf("{\"mode\":\"%s\",\"socket\":\"%s\",\"method\":\"%s\",\"path\":\"%s\","
           "\"conns\":%d,\"elapsed_s\":%.4f,\"requests\":%ld,\"errors\":%ld,"
           "\"failed_conns\":%ld,\"reconnects\":%ld,\"last_bad_status\":%d,"
           "\"rps\":%.1f,\"lat_mean_ms\":%.4f,\"lat_p50_ms\":%.4f,\"lat_p90_ms\":%.4f,"
           "\"lat_p99_ms\":%.4f,\"lat_max_ms\":%.4f}\n",
           opt_mode, opt_socket, opt_method, opt_path, n, elapsed, ok, errors, failed,
           reconnects, last_bad, elapsed > 0 ? (double)ok / elapsed : 0.0,
           all.n ? sum / (double)all.n * 1e3 : 0.0, percentile(all.v, all.n, 50) * 1e3,
           percentile(all.v, all.n, 90) * 1e3, percentile(all.v, all.n, 99) * 1e3,
           all.n ? all.v[all.n - 1] * 1e3 : 0.0);
    return (errors == 0 && failed == 0 && ok > 0) ? 0 : 1;
}

/* ---- JSON string output (for error snippets) -------------------------- */

static void print_json_string(const char *s, size_t n)
{
    putchar('"');
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch == '"' || ch == '\\')
            printf("\\%c", ch);
        else if (ch < 0x20 || ch >= 0x7f)
            printf("\\u%04x", ch);
        else
            putchar(ch);
    }
    putchar('"');
}

/* ---- download --------------------------------------------------------- */

static int run_download(void)
{
    struct conn c = {.fd = -1};
    struct response r;
    if (conn_open(&c) < 0)
        return 1;
    char req[1024];
    int len = snprintf(req, sizeof req,
                       "%s %s HTTP/1.1\r\nHost: localhost\r\n"
                       "User-Agent: sockproxy-loadgen\r\n\r\n",
                       opt_method, opt_path);
    double t0 = now_s();
    if (write_all(c.fd, req, (size_t)len) < 0 || read_head(&c, &r, 0) < 0) {
        fprintf(stderr, "loadgen: download: no response head\n");
        return 1;
    }
    double t_head = now_s();
    int rc = read_body(&c, &r);
    double t1 = now_s();
    conn_close(&c);
    double el = t1 - t0;
    printf("{\"mode\":\"download\",\"socket\":\"%s\",\"path\":\"%s\",\"status\":%d,"
           "\"framing\":\"%s\",\"complete\":%s,\"bytes\":%" PRIu64 ",\"elapsed_s\":%.4f,"
           "\"ttfb_s\":%.4f,\"mib_s\":%.2f,\"body_start\":",
           opt_socket, opt_path, r.status, framing_name[r.framing], rc == 0 ? "true" : "false",
           r.body_bytes, el, t_head - t0,
           el > 0 ? (double)r.body_bytes / el / 1048576.0 : 0.0);
    print_json_string(r.status >= 200 && r.status < 300 ? "" : r.snippet,
                      r.status >= 200 && r.status < 300 ? 0 : r.snippet_len);
    printf("}\n");
    return (rc == 0 && r.status >= 200 && r.status < 300) ? 0 : 1;
}

/* ---- upload (a tar body streamed from memory) ------------------------- */

static void tar_header(char h[512], const char *name, uint64_t size)
{
    memset(h, 0, 512);
    snprintf(h + 0, 100, "%s", name);
    snprintf(h + 100, 8, "%07o", 0644);
    snprintf(h + 108, 8, "%07o", 0);
    snprintf(h + 116, 8, "%07o", 0);
    snprintf(h + 124, 12, "%011" PRIo64, size);
    snprintf(h + 136, 12, "%011lo", (unsigned long)time(NULL));
    h[156] = '0';
    memcpy(h + 257, "ustar", 6); /* magic "ustar\0" */
    memcpy(h + 263, "00", 2);
    snprintf(h + 265, 32, "root");
    snprintf(h + 297, 32, "root");
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++)
        sum += (unsigned char)h[i];
    snprintf(h + 148, 8, "%06o", sum); /* six digits, NUL, then the space kept */
    h[155] = ' ';
}

static int run_upload(void)
{
    if (opt_size > 077777777777ull) {
        fprintf(stderr, "loadgen: --size too large for a ustar header\n");
        return 2;
    }
    uint64_t pad = (512 - opt_size % 512) % 512;
    uint64_t total = 512 + opt_size + pad + 1024;
    char *data = malloc(BUF_SIZE);
    if (data == NULL) {
        perror("loadgen: malloc");
        return 1;
    }
    /* Incompressible pattern (xorshift64), generated once and repeated. */
    uint64_t x = 0x9e3779b97f4a7c15ull;
    for (size_t i = 0; i < BUF_SIZE; i += 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        memcpy(data + i, &x, 8);
    }
    char head[2048];
    int hl = snprintf(head, sizeof head - 512,
                      "%s %s HTTP/1.1\r\nHost: localhost\r\n"
                      "User-Agent: sockproxy-loadgen\r\nContent-Type: application/x-tar\r\n"
                      "Content-Length: %" PRIu64 "\r\n\r\n",
                      opt_method, opt_path, total);
    tar_header(head + hl, opt_tar_name, opt_size);

    struct conn c = {.fd = -1};
    struct response r;
    if (conn_open(&c) < 0)
        return 1;
    double t0 = now_s();
    uint64_t sent = 0;
    int write_failed = write_all(c.fd, head, (size_t)hl + 512) < 0;
    if (!write_failed)
        sent += 512;
    for (uint64_t left = opt_size; left > 0 && !write_failed;) {
        size_t k = left < BUF_SIZE ? (size_t)left : BUF_SIZE;
        if (write_all(c.fd, data, k) < 0)
            write_failed = 1;
        else {
            sent += k;
            left -= k;
        }
    }
    if (!write_failed) {
        char *zeros = calloc(1, 512 + 1024);
        if (write_all(c.fd, zeros, (size_t)(pad + 1024)) < 0)
            write_failed = 1;
        else
            sent += pad + 1024;
        free(zeros);
    }
    double t_sent = now_s();
    int rc = read_head(&c, &r, 0);
    if (rc == 0)
        rc = read_body(&c, &r);
    double t1 = now_s();
    conn_close(&c);
    double el = t1 - t0;
    printf("{\"mode\":\"upload\",\"socket\":\"%s\",\"path\":\"%s\",\"status\":%d,"
           "\"complete\":%s,\"body_bytes\":%" PRIu64 ",\"sent_bytes\":%" PRIu64
           ",\"elapsed_s\":%.4f,\"send_s\":%.4f,\"mib_s\":%.2f,\"response\":",
           opt_socket, opt_path, rc == 0 ? r.status : 0,
           (rc == 0 && !write_failed) ? "true" : "false", total, sent, el, t_sent - t0,
           el > 0 ? (double)sent / el / 1048576.0 : 0.0);
    print_json_string(rc == 0 ? r.snippet : "", rc == 0 ? r.snippet_len : 0);
    printf("}\n");
    return (rc == 0 && !write_failed && r.status >= 200 && r.status < 300) ? 0 : 1;
}

/* ---- main ------------------------------------------------------------- */

static void usage(void)
{
    fprintf(stderr,
            "usage: loadgen --socket PATH --mode rps|latency|download|upload [options]\n"
            "  --path P        request target (default /_ping; required for download/upload)\n"
            "  --method M      default GET (PUT for upload)\n"
            "  --conns N       rps: keep-alive connections, one thread each (default 1)\n"
            "  --duration S    rps: seconds to run (default 5)\n"
            "  --count N       latency: measured requests (default 100)\n"
            "  --warmup N      rps/latency: unmeasured requests per connection first (default 10)\n"
            "  --size BYTES    upload: tar member size (default 268435456)\n"
            "  --tar-name NAME upload: tar member name (default bigfile)\n");
    exit(2);
}

int main(int argc, char **argv)
{
    signal(SIGPIPE, SIG_IGN);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (i + 1 >= argc)
            usage();
        const char *v = argv[++i];
        if (strcmp(a, "--socket") == 0)
            opt_socket = v;
        else if (strcmp(a, "--mode") == 0)
            opt_mode = v;
        else if (strcmp(a, "--path") == 0)
            opt_path = v;
        else if (strcmp(a, "--method") == 0)
            opt_method = v;
        else if (strcmp(a, "--conns") == 0)
            opt_conns = atoi(v);
        else if (strcmp(a, "--duration") == 0)
            opt_duration = atof(v);
        else if (strcmp(a, "--count") == 0)
            opt_count = atol(v);
        else if (strcmp(a, "--warmup") == 0)
            opt_warmup = atol(v);
        else if (strcmp(a, "--size") == 0)
            opt_size = strtoull(v, NULL, 10);
        else if (strcmp(a, "--tar-name") == 0)
            opt_tar_name = v;
        else
            usage();
    }
    if (opt_socket == NULL || opt_mode == NULL || opt_conns < 1 || opt_conns > 4096)
        usage();
    if (strcmp(opt_mode, "rps") == 0 || strcmp(opt_mode, "latency") == 0) {
        if (opt_path == NULL)
            opt_path = "/_ping";
        if (opt_method == NULL)
            opt_method = "GET";
        return run_requests(strcmp(opt_mode, "rps") == 0);
    }
    if (opt_path == NULL)
        usage();
    if (strcmp(opt_mode, "download") == 0) {
        if (opt_method == NULL)
            opt_method = "GET";
        return run_download();
    }
    if (strcmp(opt_mode, "upload") == 0) {
        if (opt_method == NULL)
            opt_method = "PUT";
        return run_upload();
    }
    usage();
    return 2;
}
