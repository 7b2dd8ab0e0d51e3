/* apply_redis.c - batches of events as Redis commands (and three small Lua scripts). */
#include "apply_redis.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "kchat/chat.h"
#include "kchat/map.h"
#include "kchat/util.h"

/* The batch script: see apply_redis.h for its arguments. Operations (after opcode and count):
 *   M  recent, convo, read keys; lowest and highest seq_no; n; n × (seq_no, JSON) of the
 *      newest messages (at most --recent-messages); last_seq and last_message; then
 *      (sender, seq_no) pairs: consecutive messages of one conversation
 *   T  convo and members keys, convo id, ms[, recent key, trim stop]: the latest activity,
 *      the conversation's place in its members' lists (ZADD GT), the recent trim
 *   L  lastseen key, (user, ms) pairs: each user's latest event (maximum)
 *   C  convo key, title, created_by, created_at, then as A
 *   A  members and read keys, members: added (read position 0)
 *   R  members, read and roles keys, convo id, members: removed, out of their lists, and
 *      their roles gone
 *   O  roles key, (user, role) pairs: "owner" or "admin" set, "member" removed (the roles
 *      hash names owners and admins only)
 *   U  convo key, (field, value) pairs: the title and/or topic changed
 *   E  recent and convo keys, seq_no, content and time (ISO), both as JSON strings, '1' when
 *      deleted: an edit or a delete (which also clears the message's reactions)
 *   X  recent and convo keys, seq_no, the actor as a JSON string, their reaction as one ('':
 *      none), the reactions as a JSON array: a ReactionChanged
 *   K  read key, user, seq_no: a read marker (maximum)
 *
 * E and X rewrite a message's JSON (in recent:<convo>, and last_message when it is that one)
 * as text: its members are split as written (raw keys and values, in order) and only those
 * that change are replaced, so the rest stays byte for byte what it was (cjson would reorder
 * the keys and write an empty array as {}). `reactions` is always there; `reacted`, the map
 * of each member's reaction (sorted by the members' JSON bytes), only when it is not empty,
 * and never in last_message. */
const char PROJ_REDIS_SCRIPT[] =
    "local A, call, tonumber, unpack = ARGV, redis.call, tonumber, unpack\n"
    "if A[1] ~= '' then\n"
    "  local g = call('GET', KEYS[1])\n"
    "  if g ~= A[1] then\n"
    "    if g then return {0, 'the Redis generation changed'} end\n"
    "    return {0, 'kchat:rm:gen is missing'}\n"
    "  end\n"
    "end\n"
    "local P, np = A[2], tonumber(A[3])\n"
    "local function chunks(cmd, key, t, from, to, per)\n"
    "  local step = 1000 * per\n"
    "  for s = from, to, step do\n"
    "    local e = s + step - 1\n"
    "    if e > to then e = to end\n"
    "    call(cmd, key, unpack(t, s, e))\n"
    "  end\n"
    "end\n"
    "if np > 0 then\n"
    "  local f = {}\n"
    "  for k = 1, np do f[k] = A[1 + 3 * k] end\n"
    "  for s = 1, np, 1000 do\n"
    "    local e = s + 999\n"
    "    if e > np then e = np end\n"
    "    local cur = call('HMGET', KEYS[2], unpack(f, s, e))\n"
    "    for k = s, e do\n"
    "      if (cur[k - s + 1] or '0') ~= A[2 + 3 * k] then\n"
    "        return {0, 'the Redis offsets moved'}\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local find, sub, byte, concat = string.find, string.sub, string.byte, table.concat\n"
    /* jstr: the end of the JSON string starting at q; jval: of the value starting at q. */
    "local function jstr(j, q)\n"
    "  q = q + 1\n"
    "  while true do\n"
    "    local e = find(j, '[\"\\\\]', q)\n"
    "    if not e then error('a JSON string does not end') end\n"
    "    if sub(j, e, e) == '\"' then return e end\n"
    "    q = e + 2\n"
    "  end\n"
    "end\n"
    "local function jval(j, q)\n"
    "  local c = sub(j, q, q)\n"
    "  if c == '\"' then return jstr(j, q) end\n"
    "  if c == '{' or c == '[' then\n"
    "    local d = 0\n"
    "    while true do\n"
    "      local e = find(j, '[\"{}%[%]]', q)\n"
    "      if not e then error('a JSON value does not end') end\n"
    "      local x = sub(j, e, e)\n"
    "      if x == '\"' then\n"
    "        q = jstr(j, e) + 1\n"
    "      else\n"
    "        if x == '{' or x == '[' then d = d + 1 else d = d - 1 end\n"
    "        if d == 0 then return e end\n"
    "        q = e + 1\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "  local e = find(j, '[,}%]]', q)\n"
    "  if not e or e == q then error('a JSON value does not end') end\n"
    "  return e - 1\n"
    "end\n"
    /* The members of a JSON object without spaces: raw keys and raw values, in order. */
    "local function jfields(j)\n"
    "  local ks, vs, p = {}, {}, 2\n"
    "  if sub(j, 1, 1) ~= '{' then error('not a JSON object') end\n"
    "  if j == '{}' then return ks, vs end\n"
    "  while true do\n"
    "    if sub(j, p, p) ~= '\"' then error('not a JSON object') end\n"
    "    local ke = jstr(j, p)\n"
    "    if sub(j, ke + 1, ke + 1) ~= ':' then error('not a JSON object') end\n"
    "    local ve = jval(j, ke + 2)\n"
    "    ks[#ks + 1] = sub(j, p, ke)\n"
    "    vs[#vs + 1] = sub(j, ke + 2, ve)\n"
    "    local x = sub(j, ve + 1, ve + 1)\n"
    "    if x == '}' and ve + 1 == #j then return ks, vs end\n"
    "    if x ~= ',' then error('not a JSON object') end\n"
    "    p = ve + 2\n"
    "  end\n"
    "end\n"
    "local function jget(ks, vs, k)\n"
    "  for i = 1, #ks do if ks[i] == k then return vs[i] end end\n"
    "  return nil\n"
    "end\n"
    /* v nil: the member removed; a new one goes last. */
    "local function jset(ks, vs, k, v)\n"
    "  for i = 1, #ks do\n"
    "    if ks[i] == k then\n"
    "      if v then vs[i] = v else table.remove(ks, i) table.remove(vs, i) end\n"
    "      return\n"
    "    end\n"
    "  end\n"
    "  if v then ks[#ks + 1] = k vs[#vs + 1] = v end\n"
    "end\n"
    "local function jjoin(ks, vs, order)\n"
    "  local t = {}\n"
    "  for i = 1, #ks do\n"
    "    local k = order and order[i] or i\n"
    "    t[i] = ks[k] .. ':' .. vs[k]\n"
    "  end\n"
    "  return '{' .. concat(t, ',') .. '}'\n"
    "end\n"
    /* Byte order (Lua's < follows the server's locale). */
    "local function bytes_lt(a, b)\n"
    "  for i = 1, math.min(#a, #b) do\n"
    "    local x, y = byte(a, i), byte(b, i)\n"
    "    if x ~= y then return x < y end\n"
    "  end\n"
    "  return #a < #b\n"
    "end\n"
    "local function upd(j, content, at, del)\n"
    "  local ks, vs = jfields(j)\n"
    "  jset(ks, vs, '\"content\"', content)\n"
    "  if del == '1' then\n"
    "    jset(ks, vs, '\"deleted_at\"', at)\n"
    "    jset(ks, vs, '\"reactions\"', '[]')\n"
    "    jset(ks, vs, '\"attachments\"', '[]')\n"
    "    jset(ks, vs, '\"reacted\"', nil)\n"
    "  else\n"
    "    jset(ks, vs, '\"edited_at\"', at)\n"
    "    local n = tonumber(jget(ks, vs, '\"edit_count\"') or '0') or 0\n"
    "    jset(ks, vs, '\"edit_count\"', tostring(n + 1))\n"
    "  end\n"
    "  return jjoin(ks, vs)\n"
    "end\n"
    /* The reactions, and the actor's in `reacted` (emoji '': none). */
    "local function react(j, counts, who, emoji)\n"
    "  local ks, vs = jfields(j)\n"
    "  jset(ks, vs, '\"reactions\"', counts)\n"
    "  local us, es = {}, {}\n"
    "  local r = jget(ks, vs, '\"reacted\"')\n"
    "  if r then us, es = jfields(r) end\n"
    "  jset(us, es, who, emoji ~= '' and emoji or nil)\n"
    "  local order = {}\n"
    "  for i = 1, #us do order[i] = i end\n"
    "  table.sort(order, function(a, b) return bytes_lt(us[a], us[b]) end)\n"
    "  jset(ks, vs, '\"reacted\"', #us > 0 and jjoin(us, es, order) or nil)\n"
    "  return jjoin(ks, vs)\n"
    "end\n"
    /* The fields of last_message when it is message s. */
    "local function last_of(ck, s)\n"
    "  local lm = call('HGET', ck, 'last_message')\n"
    "  if not lm then return nil end\n"
    "  local ks, vs = jfields(lm)\n"
    "  if jget(ks, vs, '\"seq_no\"') == s then return lm, ks, vs end\n"
    "end\n"
    "local i, n, nxt, errs = 4 + 3 * np, #A, 0, {}\n"
    "local function run()\n"
    "  while i <= n do\n"
    "    local op, j = A[i], i + 2\n"
    "    nxt = n + 1\n"
    "    nxt = j + tonumber(A[i + 1])\n"
    "    if op == 'M' then\n"
    "      local rk, na = A[j], tonumber(A[j + 5])\n"
    "      call('ZREMRANGEBYSCORE', rk, A[j + 3], A[j + 4])\n"
    "      local k = j + 6\n"
    "      chunks('ZADD', rk, A, k, k + 2 * na - 1, 2)\n"
    "      k = k + 2 * na\n"
    "      call('HSET', A[j + 1], 'last_seq', A[k], 'last_message', A[k + 1])\n"
    "      chunks('HSET', A[j + 2], A, k + 2, nxt - 1, 2)\n"
    "    elseif op == 'T' then\n"
    "      local ck, cid, ms = A[j], A[j + 2], A[j + 3]\n"
    "      local cur = call('HGET', ck, 'last_activity')\n"
    "      if cur and tonumber(cur) >= tonumber(ms) then ms = cur\n"
    "      else call('HSET', ck, 'last_activity', ms) end\n"
    "      for _, m in ipairs(call('SMEMBERS', A[j + 1])) do\n"
    "        call('ZADD', P .. '" KC_RM_CONVOS ":' .. m, 'GT', ms, cid)\n"
    "      end\n"
    "      if nxt > j + 4 then call('ZREMRANGEBYRANK', A[j + 4], 0, A[j + 5]) end\n"
    "    elseif op == 'L' then\n"
    "      local key = A[j]\n"
    "      for s = j + 1, nxt - 1, 2000 do\n"
    "        local e = s + 1999\n"
    "        if e > nxt - 1 then e = nxt - 1 end\n"
    "        local f, set = {}, {}\n"
    "        for k = s, e, 2 do f[#f + 1] = A[k] end\n"
    "        local cur = call('HMGET', key, unpack(f))\n"
    "        for k = s, e, 2 do\n"
    "          local c = cur[(k - s) / 2 + 1]\n"
    "          if not c or tonumber(c) < tonumber(A[k + 1]) then\n"
    "            set[#set + 1] = A[k]\n"
    "            set[#set + 1] = A[k + 1]\n"
    "          end\n"
    "        end\n"
    "        if #set > 0 then call('HSET', key, unpack(set)) end\n"
    "      end\n"
    "    elseif op == 'C' or op == 'A' then\n"
    "      local k = j\n"
    "      if op == 'C' then\n"
    "        call('HSET', A[j], 'title', A[j + 1], 'created_by', A[j + 2], 'created_at', A[j + 3])\n"
    "        call('HSETNX', A[j], 'last_seq', '0')\n"
    "        k = j + 4\n"
    "      end\n"
    "      if nxt > k + 2 then\n"
    "        chunks('SADD', A[k], A, k + 2, nxt - 1, 1)\n"
    "        local t = {}\n"
    "        for m = k + 2, nxt - 1 do\n"
    "          t[#t + 1] = A[m]\n"
    "          t[#t + 1] = '0'\n"
    "        end\n"
    "        chunks('HSET', A[k + 1], t, 1, #t, 2)\n"
    "      end\n"
    "    elseif op == 'R' then\n"
    "      if nxt > j + 4 then\n"
    "        chunks('SREM', A[j], A, j + 4, nxt - 1, 1)\n"
    "        chunks('HDEL', A[j + 1], A, j + 4, nxt - 1, 1)\n"
    "        chunks('HDEL', A[j + 2], A, j + 4, nxt - 1, 1)\n"
    "        for m = j + 4, nxt - 1 do call('ZREM', P .. '" KC_RM_CONVOS ":' .. A[m], A[j + 3]) end\n"
    "      end\n"
    "    elseif op == 'O' then\n"
    "      for k = j + 1, nxt - 2, 2 do\n"
    "        if A[k + 1] == 'member' then call('HDEL', A[j], A[k])\n"
    "        else call('HSET', A[j], A[k], A[k + 1]) end\n"
    "      end\n"
    "    elseif op == 'U' then\n"
    "      if nxt > j + 2 then call('HSET', A[j], unpack(A, j + 1, nxt - 1)) end\n"
    "    elseif op == 'E' then\n"
    "      local rk, ck, s = A[j], A[j + 1], A[j + 2]\n"
    "      local m = call('ZRANGEBYSCORE', rk, s, s)\n"
    "      if #m > 0 then\n"
    "        local new = upd(m[1], A[j + 3], A[j + 4], A[j + 5])\n"
    "        call('ZREMRANGEBYSCORE', rk, s, s)\n"
    "        call('ZADD', rk, s, new)\n"
    "      end\n"
    "      local lm = last_of(ck, s)\n"
    "      if lm then call('HSET', ck, 'last_message', upd(lm, A[j + 3], A[j + 4], A[j + 5])) end\n"
    "    elseif op == 'X' then\n"
    "      local rk, ck, s = A[j], A[j + 1], A[j + 2]\n"
    "      local m = call('ZRANGEBYSCORE', rk, s, s)\n"
    "      if #m > 0 then\n"
    "        local new = react(m[1], A[j + 5], A[j + 3], A[j + 4])\n"
    "        call('ZREMRANGEBYSCORE', rk, s, s)\n"
    "        call('ZADD', rk, s, new)\n"
    "      end\n"
    "      local lm, ks, vs = last_of(ck, s)\n"
    "      if lm then\n"
    "        jset(ks, vs, '\"reactions\"', A[j + 5])\n"
    "        call('HSET', ck, 'last_message', jjoin(ks, vs))\n"
    "      end\n"
    "    elseif op == 'K' then\n"
    "      local c = call('HGET', A[j], A[j + 1])\n"
    "      if not c or tonumber(c) < tonumber(A[j + 2]) then\n"
    "        call('HSET', A[j], A[j + 1], A[j + 2])\n"
    "      end\n"
    "    else\n"
    "      error('unknown operation ' .. tostring(op))\n"
    "    end\n"
    "    i = nxt\n"
    "  end\n"
    "end\n"
    "while i <= n do\n"
    "  local ok, e = pcall(run)\n"
    "  if ok then break end\n"
    "  if #errs < 10 then\n"
    "    errs[#errs + 1] = type(e) == 'table' and tostring(e.err) or tostring(e)\n"
    "  end\n"
    "  i = nxt\n"
    "end\n"
    "if np > 0 then\n"
    "  local t = {}\n"
    "  for k = 1, np do\n"
    "    t[#t + 1] = A[1 + 3 * k]\n"
    "    t[#t + 1] = A[3 + 3 * k]\n"
    "  end\n"
    "  chunks('HSET', KEYS[2], t, 1, #t, 2)\n"
    "end\n"
    "return {1, unpack(errs)}\n";

/* ---- arguments in the protocol's form ---- */

static void put_uint(kc_buf_t *b, uint64_t v)
{
    char tmp[24];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    kc_buf_reserve(b, n);
    while (n)
        b->data[b->len++] = tmp[--n];
    b->data[b->len] = '\0';
}

static void note_arg(proj_rargs_t *a, size_t off, size_t len)
{
    if (a->n == a->cap) {
        a->cap = a->cap ? a->cap * 2 : 1024;
        a->off = kc_xrealloc(a->off, a->cap * sizeof(size_t));
        a->len = kc_xrealloc(a->len, a->cap * sizeof(size_t));
    }
    a->off[a->n] = off;
    a->len[a->n] = len;
    a->n++;
}

static void head_room(proj_rargs_t *a)
{
    if (a->b.len == 0) {
        kc_buf_reserve(&a->b, PROJ_RARGS_HEAD + 4096);
        memset(a->b.data, ' ', PROJ_RARGS_HEAD);
        a->b.len = PROJ_RARGS_HEAD;
    }
}

void proj_rargs_add(proj_rargs_t *a, const char *s, size_t len)
{
    head_room(a);
    kc_buf_t *b = &a->b;
    kc_buf_reserve(b, len + 32);
    b->data[b->len++] = '$';
    put_uint(b, len);
    b->data[b->len++] = '\r';
    b->data[b->len++] = '\n';
    note_arg(a, b->len, len);
    if (len)
        memcpy(b->data + b->len, s, len);
    b->len += len;
    b->data[b->len++] = '\r';
    b->data[b->len++] = '\n';
    b->data[b->len] = '\0';
}

void proj_rargs_str(proj_rargs_t *a, const char *s) { proj_rargs_add(a, s, strlen(s)); }

void proj_rargs_int(proj_rargs_t *a, int64_t v)
{
    char tmp[24];
    size_t n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[sizeof(tmp) - ++n] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        tmp[sizeof(tmp) - ++n] = '-';
    proj_rargs_add(a, tmp + sizeof(tmp) - n, n);
}

/* prefix + name + ':' + id as one argument, e.g. kchat:rm:3:recent:c_1 (no id: prefix +
 * name). */
static void add_key(proj_rargs_t *a, const char *prefix, const char *name, const char *id,
                    size_t idlen)
{
    kc_buf_t *s = &a->scratch;
    kc_buf_reset(s);
    kc_buf_puts(s, prefix);
    kc_buf_puts(s, name);
    if (id) {
        kc_buf_putc(s, ':');
        kc_buf_append(s, id, idlen);
    }
    proj_rargs_add(a, s->data, s->len);
}

static void add_ckey(proj_rargs_t *a, const char *prefix, const char *name, const char *id)
{
    add_key(a, prefix, name, id, strlen(id));
}

const char *proj_rargs_get(const proj_rargs_t *a, size_t i, size_t *len)
{
    *len = a->len[i];
    return a->b.data + a->off[i];
}

const char *proj_rargs_evalsha(proj_rargs_t *a, const char *sha, int numkeys, size_t *len)
{
    head_room(a);
    char head[PROJ_RARGS_HEAD + 1], nk[16];
    snprintf(nk, sizeof(nk), "%d", numkeys);
    int n = snprintf(head, sizeof(head), "*%zu\r\n$7\r\nEVALSHA\r\n$%zu\r\n%s\r\n$%zu\r\n%s\r\n",
                     a->n + 3, strlen(sha), sha, strlen(nk), nk);
    if (n < 0 || (size_t)n > PROJ_RARGS_HEAD)
        abort(); /* a sha is 40 characters: it fits */
    memcpy(a->b.data + PROJ_RARGS_HEAD - (size_t)n, head, (size_t)n);
    *len = a->b.len - (PROJ_RARGS_HEAD - (size_t)n);
    return a->b.data + PROJ_RARGS_HEAD - (size_t)n;
}

void proj_rargs_free(proj_rargs_t *a)
{
    kc_buf_free(&a->b);
    kc_buf_free(&a->scratch);
    free(a->off);
    free(a->len);
    memset(a, 0, sizeof(*a));
}

/* An operation: its opcode, then its argument count, patched by op_end. The count is written
 * with ten digits (Lua's tonumber reads them), so it can be patched in place. */
static size_t op_begin(proj_rargs_t *a, const char *opcode)
{
    proj_rargs_str(a, opcode);
    proj_rargs_add(a, "0000000000", 10);
    return a->n;
}

static void op_end(proj_rargs_t *a, size_t first)
{
    char num[11];
    snprintf(num, sizeof(num), "%010zu", a->n - first);
    memcpy(a->b.data + a->off[first - 1], num, 10);
}

/* ---- the operations of a batch ---- */

static void message_json(kc_buf_t *b, const proj_event_t *e)
{
    char at[32];
    kc_iso_ms(e->at, at);
#define FIELD(name, val)                                                                           \
    do {                                                                                           \
        kc_buf_puts(b, ",\"" name "\":\"");                                                        \
        kc_buf_json_str(b, (val), strlen(val));                                                    \
        kc_buf_putc(b, '"');                                                                       \
    } while (0)
    kc_buf_puts(b, "{\"convo_id\":\"");
    kc_buf_json_str(b, e->convo_id, strlen(e->convo_id));
    kc_buf_puts(b, "\",\"seq_no\":");
    if (e->seq_no < 0) {
        kc_buf_putc(b, '-');
        put_uint(b, (uint64_t)0 - (uint64_t)e->seq_no);
    } else {
        put_uint(b, (uint64_t)e->seq_no);
    }
    FIELD("server_msg_id", e->server_msg_id);
    FIELD("sender_id", e->actor_id);
    FIELD("client_msg_id", e->client_msg_id);
    FIELD("content", e->content);
    FIELD("content_type", e->content_type);
    FIELD("created_at", at);
#undef FIELD
    kc_buf_puts(b, ",\"reply_to\":");
    if (e->reply_to > 0)
        put_uint(b, (uint64_t)e->reply_to);
    else
        kc_buf_puts(b, "null");
    kc_buf_puts(b, ",\"attachments\":");
    kc_buf_puts(b, e->attachments ? e->attachments : "[]");
    kc_buf_puts(b, ",\"edited_at\":null,\"edit_count\":0,\"deleted_at\":null,\"reactions\":[]}");
}

char *proj_message_json(const proj_event_t *e)
{
    kc_buf_t b = {0};
    message_json(&b, e);
    return kc_buf_steal(&b);
}

/* s as a JSON string (quoted), as message_json writes it. */
static void add_json_str(proj_rargs_t *a, const char *s)
{
    kc_buf_t *b = &a->scratch;
    kc_buf_reset(b);
    kc_buf_putc(b, '"');
    kc_buf_json_str(b, s, strlen(s));
    kc_buf_putc(b, '"');
    proj_rargs_add(a, b->data, b->len);
}

/* A ReactionChanged's counts as the message's "reactions": [{"emoji":..,"count":..}, ...]. */
static void add_reactions(proj_rargs_t *a, const proj_event_t *e)
{
    kc_buf_t *b = &a->scratch;
    kc_buf_reset(b);
    kc_buf_putc(b, '[');
    for (size_t i = 0; i < e->ncounts; i++) {
        kc_buf_puts(b, i ? ",{\"emoji\":\"" : "{\"emoji\":\"");
        kc_buf_json_str(b, e->counts[i].emoji, strlen(e->counts[i].emoji));
        kc_buf_puts(b, "\",\"count\":");
        put_uint(b, (uint64_t)(e->counts[i].count > 0 ? e->counts[i].count : 0));
        kc_buf_putc(b, '}');
    }
    kc_buf_putc(b, ']');
    proj_rargs_add(a, b->data, b->len);
}

typedef struct {
    int64_t at;
    int messages;
} touch_t;

/* The consecutive messages of one conversation not yet written (indexes into the items). */
typedef struct {
    size_t *idx;
    size_t n, cap;
} group_t;

typedef struct {
    const char *prefix;
    long long recent;
    proj_item_t *items;
    proj_rargs_t *out;
} build_t;

static void add_json(build_t *bl, const proj_event_t *e)
{
    proj_rargs_t *a = bl->out;
    kc_buf_t *s = &a->scratch;
    kc_buf_reset(s);
    message_json(s, e);
    proj_rargs_add(a, s->data, s->len);
}

/* One M operation for a run of consecutive messages of one conversation. */
static void flush_group(build_t *bl, group_t *g)
{
    if (!g->n)
        return;
    proj_rargs_t *a = bl->out;
    const proj_event_t *first = &bl->items[g->idx[0]].ev, *last = &bl->items[g->idx[g->n - 1]].ev;
    size_t first_op = op_begin(a, "M");
    add_ckey(a, bl->prefix, KC_RM_RECENT, last->convo_id);
    add_ckey(a, bl->prefix, KC_RM_CONVO, last->convo_id);
    add_ckey(a, bl->prefix, KC_RM_READ, last->convo_id);
    proj_rargs_int(a, first->seq_no);
    proj_rargs_int(a, last->seq_no);
    /* Only the newest `recent` can stay in recent:<convo>: the trim would remove the others. */
    size_t nadd = g->n < (size_t)bl->recent ? g->n : (size_t)bl->recent;
    proj_rargs_int(a, (int64_t)nadd);
    size_t last_json = 0;
    for (size_t k = g->n - nadd; k < g->n; k++) {
        const proj_event_t *e = &bl->items[g->idx[k]].ev;
        proj_rargs_int(a, e->seq_no);
        add_json(bl, e);
        last_json = a->n - 1;
    }
    proj_rargs_int(a, last->seq_no);
    size_t jl;
    const char *j = proj_rargs_get(a, last_json, &jl);
    /* j points into the buffer the copy goes to: copy it out first. */
    kc_buf_reset(&a->scratch);
    kc_buf_append(&a->scratch, j, jl);
    proj_rargs_add(a, a->scratch.data, a->scratch.len);
    /* Each sender has read up to their own newest message of the run. */
    for (size_t k = g->n; k-- > 0;) {
        const proj_event_t *e = &bl->items[g->idx[k]].ev;
        int dup = 0;
        for (size_t q = k + 1; q < g->n && !dup; q++)
            dup = strcmp(bl->items[g->idx[q]].ev.actor_id, e->actor_id) == 0;
        if (dup)
            continue;
        proj_rargs_str(a, e->actor_id);
        proj_rargs_int(a, e->seq_no);
    }
    op_end(a, first_op);
    g->n = 0;
}

static void flush_group_cb(const void *key, size_t klen, void *val, void *arg)
{
    (void)key;
    (void)klen;
    flush_group(arg, val);
}

static void free_group(void *val)
{
    group_t *g = val;
    free(g->idx);
    free(g);
}

static void flush_touch(const void *key, size_t klen, void *val, void *arg)
{
    build_t *bl = arg;
    touch_t *t = val;
    proj_rargs_t *a = bl->out;
    size_t first = op_begin(a, "T");
    add_key(a, bl->prefix, KC_RM_CONVO, key, klen);
    add_key(a, bl->prefix, KC_RM_MEMBERS, key, klen);
    proj_rargs_add(a, key, klen);
    proj_rargs_int(a, t->at);
    if (t->messages) {
        add_key(a, bl->prefix, KC_RM_RECENT, key, klen);
        proj_rargs_int(a, -(bl->recent + 1));
    }
    op_end(a, first);
}

static void flush_seen(const void *key, size_t klen, void *val, void *arg)
{
    proj_rargs_t *a = arg;
    proj_rargs_add(a, key, klen);
    proj_rargs_int(a, *(int64_t *)val);
}

/* Members keys and ids of an added or removed set. */
static void members_op(build_t *bl, const char *opcode, const proj_event_t *e)
{
    proj_rargs_t *a = bl->out;
    size_t first = op_begin(a, opcode);
    add_ckey(a, bl->prefix, KC_RM_MEMBERS, e->convo_id);
    add_ckey(a, bl->prefix, KC_RM_READ, e->convo_id);
    if (e->kind == EV_REMOVED) {
        add_ckey(a, bl->prefix, KC_RM_ROLES, e->convo_id);
        proj_rargs_str(a, e->convo_id);
    }
    for (size_t m = 0; m < e->nmembers; m++)
        proj_rargs_str(a, e->members[m]);
    op_end(a, first);
}

/* One member's role in roles:<convo> (an O operation of one pair). */
static void role_op(build_t *bl, const char *convo, const char *user, const char *role)
{
    proj_rargs_t *a = bl->out;
    size_t first = op_begin(a, "O");
    add_ckey(a, bl->prefix, KC_RM_ROLES, convo);
    proj_rargs_str(a, user);
    proj_rargs_str(a, role);
    op_end(a, first);
}

size_t proj_redis_build(const char *prefix, proj_item_t *items, size_t n, long long recent,
                        proj_rargs_t *out)
{
    kc_map_t *touched = kc_map_new(), *seen = kc_map_new(), *groups = kc_map_new();
    build_t bl = {.prefix = prefix, .recent = recent > 0 ? recent : 1, .items = items, .out = out};
    size_t applied = 0;
    for (size_t i = 0; i < n; i++) {
        if (!items[i].to_redis || items[i].kind != ITEM_EVENT)
            continue;
        const proj_event_t *e = &items[i].ev;
        if (e->kind == EV_REJECTED)
            continue;
        size_t cl = strlen(e->convo_id);
        group_t *g = kc_map_get(groups, e->convo_id, cl);
        if (e->kind == EV_MESSAGE) {
            if (!g) {
                g = kc_xcalloc(1, sizeof(*g));
                (void)kc_map_put(groups, e->convo_id, cl, g);
            }
            /* A run is of consecutive seq_nos, so recent:<convo> loses one range of scores. */
            if (g->n && items[g->idx[g->n - 1]].ev.seq_no + 1 != e->seq_no)
                flush_group(&bl, g);
            if (g->n == g->cap) {
                g->cap = g->cap ? g->cap * 2 : 8;
                g->idx = kc_xrealloc(g->idx, g->cap * sizeof(size_t));
            }
            g->idx[g->n++] = i;
        } else if (g) {
            /* Any other event of the conversation comes after its messages. */
            flush_group(&bl, g);
        }
        proj_rargs_t *a = out;
        size_t first;
        switch (e->kind) {
        case EV_CREATED: {
            first = op_begin(a, "C");
            add_ckey(a, prefix, KC_RM_CONVO, e->convo_id);
            proj_rargs_str(a, e->title);
            proj_rargs_str(a, e->actor_id);
            proj_rargs_int(a, e->at);
            add_ckey(a, prefix, KC_RM_MEMBERS, e->convo_id);
            add_ckey(a, prefix, KC_RM_READ, e->convo_id);
            int creator_member = 0;
            for (size_t m = 0; m < e->nmembers; m++) {
                proj_rargs_str(a, e->members[m]);
                creator_member |= strcmp(e->members[m], e->actor_id) == 0;
            }
            op_end(a, first);
            /* The creator is the owner (when a member); the others are plain members. */
            if (creator_member)
                role_op(&bl, e->convo_id, e->actor_id, "owner");
            break;
        }
        case EV_ADDED:
            if (e->nmembers)
                members_op(&bl, "A", e);
            break;
        case EV_REMOVED:
            if (e->nmembers)
                members_op(&bl, "R", e);
            if (e->promoted)
                role_op(&bl, e->convo_id, e->promoted, "owner");
            break;
        case EV_ROLE:
            role_op(&bl, e->convo_id, e->user_id, e->role);
            break;
        case EV_UPDATED:
            first = op_begin(a, "U");
            add_ckey(a, prefix, KC_RM_CONVO, e->convo_id);
            if (e->title) {
                proj_rargs_str(a, "title");
                proj_rargs_str(a, e->title);
            }
            if (e->topic) {
                proj_rargs_str(a, "topic");
                proj_rargs_str(a, e->topic);
            }
            op_end(a, first);
            break;
        case EV_EDITED:
        case EV_DELETED: {
            char at[32];
            kc_iso_ms(e->at, at);
            first = op_begin(a, "E");
            add_ckey(a, prefix, KC_RM_RECENT, e->convo_id);
            add_ckey(a, prefix, KC_RM_CONVO, e->convo_id);
            proj_rargs_int(a, e->seq_no);
            add_json_str(a, e->kind == EV_EDITED ? e->content : "");
            add_json_str(a, at);
            proj_rargs_str(a, e->kind == EV_DELETED ? "1" : "0");
            op_end(a, first);
            break;
        }
        case EV_REACTION:
            first = op_begin(a, "X");
            add_ckey(a, prefix, KC_RM_RECENT, e->convo_id);
            add_ckey(a, prefix, KC_RM_CONVO, e->convo_id);
            proj_rargs_int(a, e->seq_no);
            add_json_str(a, e->actor_id);
            if (e->emoji)
                add_json_str(a, e->emoji);
            else
                proj_rargs_add(a, "", 0);
            add_reactions(a, e);
            op_end(a, first);
            break;
        case EV_READ:
            first = op_begin(a, "K");
            add_ckey(a, prefix, KC_RM_READ, e->convo_id);
            proj_rargs_str(a, e->actor_id);
            proj_rargs_int(a, e->seq_no);
            op_end(a, first);
            break;
        case EV_MESSAGE:
        case EV_REJECTED:
            break;
        }
        touch_t *t = kc_map_get(touched, e->convo_id, cl);
        if (!t) {
            t = kc_xcalloc(1, sizeof(*t));
            t->at = e->at;
            (void)kc_map_put(touched, e->convo_id, cl, t);
        }
        if (e->at > t->at)
            t->at = e->at;
        t->messages |= e->kind == EV_MESSAGE;
        size_t al = strlen(e->actor_id);
        int64_t *s = kc_map_get(seen, e->actor_id, al);
        if (!s) {
            s = kc_xmalloc(sizeof(*s));
            *s = e->at;
            (void)kc_map_put(seen, e->actor_id, al, s);
        }
        if (e->at > *s)
            *s = e->at;
        applied++;
    }
    kc_map_each(groups, flush_group_cb, &bl);
    kc_map_each(touched, flush_touch, &bl);
    if (kc_map_size(seen)) {
        size_t first = op_begin(out, "L");
        add_key(out, prefix, KC_RM_LASTSEEN, NULL, 0);
        kc_map_each(seen, flush_seen, out);
        op_end(out, first);
    }
    kc_map_destroy(groups, free_group);
    kc_map_destroy(touched, free);
    kc_map_destroy(seen, free);
    return applied;
}
