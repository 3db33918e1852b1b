/* SPDX-License-Identifier: MIT */
/*
 * The control socket's transport (daemon/server.c) through socketpairs, with
 * a fake method table: one answer per request and in order, answers given
 * later, one request per client per turn, the line timeout, too-large lines,
 * control characters, EOF with a call under way, a client gone before its
 * answer. The assertions read the protocol lines the peer receives; no log
 * text. As BlueZ's unit/test-mgmt.c drives mgmt over a socketpair.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "daemon-test.h"
#include "server.h"
#include "timeutil.h"
#include "util.h"

typedef struct Bed {
    sd_event *e;
    Manager *m;
    Server *s;
    ServerMethods methods;
    char dir[64];
    ServerCall *held;   /* the call a LATER handler keeps */
    unsigned statuses;  /* handled so far */
    unsigned order[64]; /* which client (by fd) each status came from */
} Bed;

/* status: answered at once, {"n":N}; which peer asked is recorded. */
static int fake_status(void *userdata, ServerCall *call, WireRequest *req, int fd,
                       ServerReply *reply)
{
    Bed *b = userdata;
    json_object *o = json_object_new_object();

    if (b->statuses < ELEMENTSOF(b->order))
        b->order[b->statuses] = (unsigned)server_call_peer(call)->serial;
    json_object_object_add(o, "n", json_object_new_int((int)++b->statuses));
    reply->result = o;
    return 0;
}

/* devices: kept, answered when the test says. */
static int fake_later(void *userdata, ServerCall *call, WireRequest *req, int fd,
                      ServerReply *reply)
{
    Bed *b = userdata;

    b->held = call;
    return SERVER_REPLY_LATER;
}

/* jobs: an error. */
static int fake_error(void *userdata, ServerCall *call, WireRequest *req, int fd,
                      ServerReply *reply)
{
    return server_reply_error(reply, WIRE_ERROR_NOT_FOUND, NULL, "nothing here");
}

/* Anything else: a failure the transport turns into `internal`. */
static int fake_fail(void *userdata, ServerCall *call, WireRequest *req, int fd, ServerReply *reply)
{
    closep(&fd);
    return -EIO;
}

static bool bed_init(Bed *b)
{
    ConfigOverrides o = {};
    Config *config = NULL;
    ImageCache *cache = NULL;
    char sock[128];

    *b = (Bed){};
    snprintf(b->dir, sizeof(b->dir), "/tmp/test-server-XXXXXX");
    if (!mkdtemp(b->dir))
        return false;
    snprintf(sock, sizeof(sock), "%s/s.sock", b->dir);
    o.socket_path = sock;
    o.state_dir = b->dir;
    if (sd_event_new(&b->e) < 0 || config_new_default(&config) < 0 ||
        config_apply_overrides(config, &o) < 0 || image_cache_new(&cache) < 0)
        return false;
    if (manager_new(b->e, &(ManagerOptions){}, config, cache, &b->m) < 0)
        return false;
    for (WireMethod m = 0; m < _WIRE_METHOD_MAX; m++)
        b->methods.handlers[m] = fake_fail;
    b->methods.handlers[WIRE_METHOD_STATUS] = fake_status;
    b->methods.handlers[WIRE_METHOD_DEVICES] = fake_later;
    b->methods.handlers[WIRE_METHOD_JOBS] = fake_error;
    b->methods.userdata = b;
    return server_new(b->e, b->m, &b->methods, &b->s) >= 0;
}

static void bed_done(Bed *b)
{
    char sock[128];

    server_free(b->s);
    manager_free(b->m);
    sd_event_unref(b->e);
    snprintf(sock, sizeof(sock), "%s/s.sock", b->dir);
    unlink(sock);
    rmdir(b->dir);
}

/* A connected peer: our end, the server has the other. */
static int peer(Bed *b)
{
    int sv[2];

    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return -1;
    if (server_adopt(b->s, sv[1]) < 0) {
        close(sv[0]);
        close(sv[1]);
        return -1;
    }
    return sv[0];
}

static bool say(int fd, const char *text)
{
    return write(fd, text, strlen(text)) == (ssize_t)strlen(text);
}

/* Run the loop until fd has n lines (or EOF) in buf, at most timeout_ms. */
static size_t lines_in(const char *s)
{
    size_t n = 0;

    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static bool read_lines(Bed *b, int fd, char *buf, size_t size, size_t n, int timeout_ms, bool *eof)
{
    uint64_t end = now_usec(CLOCK_MONOTONIC) + (uint64_t)timeout_ms * 1000u;
    size_t len = strlen(buf);

    while (lines_in(buf) < n && now_usec(CLOCK_MONOTONIC) < end) {
        ssize_t k;

        (void)sd_event_run(b->e, 10000);
        k = recv(fd, buf + len, size - len - 1, MSG_DONTWAIT);
        if (k == 0) {
            if (eof)
                *eof = true;
            break;
        }
        if (k > 0) {
            len += (size_t)k;
            buf[len] = '\0';
        }
    }
    return lines_in(buf) >= n;
}

static void test_one_answer_each(T *t)
{
    Bed b;
    char buf[4096] = "";
    int fd;

    CHECK(bed_init(&b));
    CHECK((fd = peer(&b)) >= 0);
    CHECK(say(fd, "{\"id\":1,\"method\":\"status\"}\n{\"id\":2,\"method\":\"jobs\"}\n"
                  "{\"id\":3,\"method\":\"pause\"}\n{\"id\":4,\"method\":\"status\"}\n"));
    CHECK(read_lines(&b, fd, buf, sizeof(buf), 4, 5000, NULL));
    /* In order, one each: a result, an error, internal for -errno, a result. */
    CHECK(strstr(buf, "{\"id\":1,\"result\":{\"n\":1}}\n") == buf);
    CHECK(strstr(buf,
                 "{\"id\":2,\"error\":{\"code\":\"not-found\",\"message\":\"nothing here\"}}"));
    CHECK(strstr(buf, "{\"id\":3,\"error\":{\"code\":\"internal\",\"message\":\"pause failed: "
                      "Input/output error\"}}"));
    CHECK(strstr(buf, "{\"id\":4,\"result\":{\"n\":2}}\n"));
    CHECK(lines_in(buf) == 4);
    close(fd);
    bed_done(&b);
}

/* A call answered later holds the client's next request back, and order stays. */
static void test_later(T *t)
{
    Bed b;
    char buf[4096] = "";
    ServerReply reply = {};
    int fd;

    CHECK(bed_init(&b));
    CHECK((fd = peer(&b)) >= 0);
    CHECK(say(fd, "{\"id\":1,\"method\":\"devices\"}\n{\"id\":2,\"method\":\"status\"}\n"));
    for (int i = 0; i < 50 && !b.held; i++)
        (void)sd_event_run(b.e, 10000);
    CHECK(b.held);
    CHECK(!read_lines(&b, fd, buf, sizeof(buf), 1, 200, NULL));
    CHECK(b.statuses == 0); /* not read while the first waits */
    reply.result = json_object_new_string("done");
    server_call_reply(TAKE_PTR(b.held), 0, &reply);
    CHECK(read_lines(&b, fd, buf, sizeof(buf), 2, 5000, NULL));
    CHECK(strstr(buf, "{\"id\":1,\"result\":\"done\"}\n{\"id\":2,\"result\":{\"n\":1}}\n") == buf);
    close(fd);
    bed_done(&b);
}

/* EOF while a call is under way: it is still answered, then the connection closes. */
static void test_eof_answers_first(T *t)
{
    Bed b;
    char buf[4096] = "";
    ServerReply reply = {};
    bool eof = false;
    int fd;

    CHECK(bed_init(&b));
    CHECK((fd = peer(&b)) >= 0);
    CHECK(say(fd, "{\"id\":7,\"method\":\"devices\"}\n{\"id\":8,\"method\":\"status\"}\n"));
    CHECK(shutdown(fd, SHUT_WR) == 0);
    for (int i = 0; i < 50 && !b.held; i++)
        (void)sd_event_run(b.e, 10000);
    CHECK(b.held);
    reply.result = json_object_new_boolean(true);
    server_call_reply(TAKE_PTR(b.held), 0, &reply);
    CHECK(read_lines(&b, fd, buf, sizeof(buf), 2, 5000, NULL));
    CHECK(strstr(buf, "{\"id\":7,\"result\":true}\n{\"id\":8,\"result\":{\"n\":1}}\n") == buf);
    CHECK(!read_lines(&b, fd, buf, sizeof(buf), 3, 2000, &eof) && eof);
    close(fd);
    bed_done(&b);
}

/* A client gone before its answer: the answer goes nowhere, and nothing else suffers. */
static void test_gone_before_answer(T *t)
{
    Bed b;
    char buf[1024] = "";
    ServerReply reply = {};
    int fd, other;

    CHECK(bed_init(&b));
    CHECK((fd = peer(&b)) >= 0);
    CHECK(say(fd, "{\"id\":1,\"method\":\"devices\"}\n"));
    for (int i = 0; i < 50 && !b.held; i++)
        (void)sd_event_run(b.e, 10000);
    CHECK(b.held && server_call_connected(b.held));
    CHECK(server_call_peer(b.held)->serial == 1);
    close(fd);
    for (int i = 0; i < 20; i++)
        (void)sd_event_run(b.e, 10000);
    reply.result = json_object_new_object();
    server_call_reply(TAKE_PTR(b.held), 0, &reply); /* to nobody: freed, and the client too */
    CHECK((other = peer(&b)) >= 0);
    CHECK(say(other, "{\"id\":2,\"method\":\"status\"}\n"));
    CHECK(read_lines(&b, other, buf, sizeof(buf), 1, 5000, NULL));
    CHECK(strstr(buf, "{\"id\":2,\"result\":{\"n\":1}}\n") == buf);
    close(other);
    bed_done(&b);
}

/* Two clients, one pipelining 200 requests: the other is served within a few turns. */
static void test_fair_turns(T *t)
{
    Bed b;
    char buf[65536] = "", one[1024] = "";
    char *many = NULL;
    size_t len = 0;
    int a, c;

    CHECK(bed_init(&b));
    CHECK((a = peer(&b)) >= 0 && (c = peer(&b)) >= 0);
    for (int i = 0; i < 200; i++) {
        char line[64];

        snprintf(line, sizeof(line), "{\"id\":%d,\"method\":\"status\"}\n", i);
        many = realloc(many, len + strlen(line) + 1);
        CHECK(many);
        memcpy(many + len, line, strlen(line) + 1);
        len += strlen(line);
    }
    CHECK(say(a, many));
    CHECK(say(c, "{\"id\":\"c\",\"method\":\"status\"}\n"));
    free(many);
    CHECK(read_lines(&b, c, one, sizeof(one), 1, 5000, NULL));
    /* Client c (serial 2) was served within the first few turns, long before a's 200. */
    {
        unsigned at = UINT32_MAX;

        for (unsigned i = 0; i < b.statuses && i < ELEMENTSOF(b.order) && at == UINT32_MAX; i++)
            if (b.order[i] == 2)
                at = i;
        if (at >= 8)
            fprintf(stderr, "    client c served at turn %u of %u\n", at, b.statuses);
        CHECK(at < 8);
    }
    CHECK(read_lines(&b, a, buf, sizeof(buf), 200, 10000, NULL));
    close(a);
    close(c);
    bed_done(&b);
}

/* Refused at the wire: a control character, a line over the limit (then closed). */
static void test_refusals(T *t)
{
    Bed b;
    char buf[4096] = "", *big;
    bool eof = false;
    int fd;

    CHECK(bed_init(&b));
    CHECK((fd = peer(&b)) >= 0);
    CHECK(say(fd, "{\"id\":1,\"method\":\"hello\",\"params\":{\"client\":\"a\\u001b[2J\"}}\n"));
    CHECK(read_lines(&b, fd, buf, sizeof(buf), 1, 5000, NULL));
    CHECK(strstr(buf, "\"code\":\"bad-request\"") && strstr(buf, "params.client"));
    big = malloc(WIRE_MAX_LINE + 2);
    CHECK(big);
    memset(big, 'x', WIRE_MAX_LINE + 1);
    big[WIRE_MAX_LINE + 1] = '\0';
    buf[0] = '\0';
    (void)say(fd, big);
    free(big);
    CHECK(read_lines(&b, fd, buf, sizeof(buf), 1, 5000, NULL));
    CHECK(strstr(buf, "\"code\":\"too-large\""));
    CHECK(!read_lines(&b, fd, buf, sizeof(buf), 2, 7000, &eof) && eof);
    close(fd);
    bed_done(&b);
}

/* Half a line and nothing more: `timeout` after 5 s, then closed. */
static void test_line_timeout(T *t)
{
    Bed b;
    char buf[4096] = "";
    uint64_t t0;
    bool eof = false;
    int fd;

    CHECK(bed_init(&b));
    CHECK((fd = peer(&b)) >= 0);
    t0 = now_usec(CLOCK_MONOTONIC);
    CHECK(say(fd, "{\"id\":1,\"meth"));
    CHECK(read_lines(&b, fd, buf, sizeof(buf), 1, 8000, NULL));
    CHECK(now_usec(CLOCK_MONOTONIC) - t0 >= (WIRE_LINE_TIMEOUT_S - 1) * USEC_PER_SEC);
    CHECK(strstr(buf, "{\"id\":null,\"error\":{\"code\":\"timeout\""));
    CHECK(!read_lines(&b, fd, buf, sizeof(buf), 2, 7000, &eof) && eof);
    close(fd);
    bed_done(&b);
}

int main(void)
{
    RUN(test_one_answer_each);
    RUN(test_later);
    RUN(test_eof_answers_first);
    RUN(test_gone_before_answer);
    RUN(test_fair_turns);
    RUN(test_refusals);
    RUN(test_line_timeout);
    return test_summary();
}
