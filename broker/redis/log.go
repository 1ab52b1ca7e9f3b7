package redis

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"github.com/wsasync/wsasync"
	"github.com/wsasync/wsasync/sente"
)

// The log is one stream, <prefix>:log, whose entries have two fields:
//
//	e   the epoch
//	p   the push: "<target><flush><len(to)>:<to><event>", target being
//	    1 (user), 2 (client) or 3 (all), flush 1 or 0, for example
//	    `104:ada1["chat/msg","hi"]`
//
// (Two fields rather than one per part of the push: it halves the cost of
// reading entries.)
//
// The epoch lives in <prefix>:epoch. A script renews it whenever that key
// or the stream is missing (a restart without persistence, a deleted
// stream): entries of a new epoch always follow those of an older one in
// the stream. A position's Seq is the entry's stream id "ms-n" packed as
// ms<<20 | n; the publish script keeps n below 2^19 (see publishLua).

const seqBits = 20

// epochLua leaves the current epoch in the local epoch, renewing it to
// ARGV[1] when the epoch key or the stream (KEYS[1]) is missing.
const epochLua = `
local epoch = redis.call('GET', KEYS[2])
if not epoch or redis.call('EXISTS', KEYS[1]) == 0 then
  epoch = ARGV[1]
  redis.call('SET', KEYS[2], epoch)
end
`

// publishLua appends pushes to the log and trims it. KEYS: log, epoch.
// ARGV: new epoch, max entries, max age in ms, then the pushes, packed.
// When the sequence part of the last id reaches 2^19 (only when the
// server's clock steps back under load), it moves the stream's last id to
// the next millisecond: with at most maxBatch pushes per call, sequence
// parts stay below 2^20.
var publishLua = goredis.NewScript(epochLua + `
local id
for i = 4, #ARGV do
  id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'e', epoch, 'p', ARGV[i])
end
local ms, n = string.match(id, '^(%d+)-(%d+)$')
if tonumber(n) >= 524288 then
  redis.call('XSETID', KEYS[1], string.format('%.0f-0', tonumber(ms) + 1))
end
local t = redis.call('TIME')
local min = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000) - tonumber(ARGV[3])
if min > 0 then
  redis.call('XTRIM', KEYS[1], 'MINID', '~', string.format('%.0f', min))
end
return 1
`)

// stateLua returns {epoch, last-generated-id, max-deleted-entry-id,
// entries-added, length, first entry id or empty} of the log, or {} when
// there is no history. With a new epoch in ARGV[1] it starts a history (an empty
// stream) if there is none. KEYS: log, epoch.
var stateLua = goredis.NewScript(`
if ARGV[1] == '' and (redis.call('EXISTS', KEYS[1]) == 0 or redis.call('EXISTS', KEYS[2]) == 0) then
  return {}
end
` + epochLua + `
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('XGROUP', 'CREATE', KEYS[1], 'sente-new', '$', 'MKSTREAM')
  redis.call('XGROUP', 'DESTROY', KEYS[1], 'sente-new')
end
local info = redis.call('XINFO', 'STREAM', KEYS[1])
local r = {epoch, '0-0', '0-0', 0, 0, ''}
for i = 1, #info, 2 do
  local k, v = info[i], info[i+1]
  if k == 'last-generated-id' then r[2] = v
  elseif k == 'max-deleted-entry-id' then r[3] = v
  elseif k == 'entries-added' then r[4] = v
  elseif k == 'length' then r[5] = v
  elseif k == 'first-entry' and type(v) == 'table' then r[6] = v[1] end
end
return r
`)

// logState is what stateLua returns.
type logState struct {
	exists        bool
	epoch         string
	last          string // last-generated-id
	maxDeleted    string // max-deleted-entry-id (XDEL only, not trimming)
	added, length int64
	first         string // id of the first entry, "" if none
}

// state reads the log's state, starting a history with newEpoch if there is
// none and newEpoch is not empty.
func (b *Broker) state(ctx context.Context, newEpoch string) (logState, error) {
	v, err := stateLua.Run(ctx, b.rdb, []string{b.keys.log, b.keys.epoch}, newEpoch).Slice()
	if err != nil {
		return logState{}, err
	}
	if len(v) == 0 {
		return logState{}, nil
	}
	if len(v) != 6 {
		return logState{}, fmt.Errorf("unexpected state reply %v", v)
	}
	st := logState{exists: true}
	st.epoch, _ = v[0].(string)
	st.last, _ = v[1].(string)
	st.maxDeleted, _ = v[2].(string)
	st.added, _ = v[3].(int64)
	st.length, _ = v[4].(int64)
	st.first, _ = v[5].(string)
	return st, nil
}

// lostAfter reports whether entries after the stream id from may have been
// removed: deleted (XDEL), or trimmed, which removes the entries before the
// first one. Conservative: when from precedes the first entry and anything
// was ever trimmed, it cannot tell whether entries lay in between.
func (st logState) lostAfter(from string) bool {
	if compareIDs(st.maxDeleted, from) > 0 {
		return true
	}
	if st.added <= st.length {
		return false // nothing removed, ever
	}
	if st.first == "" {
		return compareIDs(from, st.last) < 0
	}
	return compareIDs(from, st.first) < 0
}

// A pubReq is one Publish waiting for a publisher goroutine.
type pubReq struct {
	ctx  context.Context
	push []byte // packed
	done chan error
}

// maxBatch bounds the pushes of one publish script call.
const maxBatch = 512

// Publish appends p to the log; every subscribed node, this one included,
// receives it. Concurrent calls share one script call (one round trip).
// When ctx ends first, Publish returns ctx's error, but a push already sent
// may still reach the log.
func (b *Broker) Publish(ctx context.Context, p sente.Push) error {
	if p.Target < sente.ToUser || p.Target > sente.ToAll {
		return fmt.Errorf("redis broker: publish: invalid target %d", p.Target)
	}
	// Packed here, in the caller's goroutine: once Publish returns (its
	// ctx may end before the push is sent), p is the caller's again.
	push := packPush(make([]byte, 0, 24+len(p.To)+len(p.Event)), &p)
	r := &pubReq{ctx: ctx, push: push, done: make(chan error, 1)}
	select {
	case b.pubs <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-b.ctx.Done():
		return ErrClosed
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	case <-b.ctx.Done():
		return ErrClosed
	}
}

// publisher sends what Publish queues, in batches of whatever queued while
// the previous batch was on its way.
func (b *Broker) publisher() {
	defer b.wg.Done()
	keys := []string{b.keys.log, b.keys.epoch}
	var (
		batch []*pubReq
		args  []any
	)
	for {
		batch = batch[:0]
		select {
		case r := <-b.pubs:
			batch = append(batch, r)
		case <-b.ctx.Done():
			return
		}
	more:
		for len(batch) < maxBatch {
			select {
			case r := <-b.pubs:
				batch = append(batch, r)
			default:
				break more
			}
		}
		args = append(args[:0], sente.NewEpoch(), b.keys.historyArg, b.keys.ageArg)
		n := 0
		for _, r := range batch {
			if err := r.ctx.Err(); err != nil {
				r.done <- err // given up: not sent
				continue
			}
			args = append(args, r.push)
			batch[n] = r
			n++
		}
		if n == 0 {
			continue
		}
		err := publishLua.Run(b.ctx, b.rdb, keys, args...).Err()
		if err != nil {
			if b.ctx.Err() != nil {
				err = ErrClosed
			} else {
				err = fmt.Errorf("redis broker: publish: %w", err)
			}
		}
		for _, r := range batch[:n] {
			r.done <- err
		}
		clear(args) // let the pushes go
		clear(batch)
	}
}

// Replay calls fn with the pushes after from up to and including to, from
// the log. lost reports that from is of another epoch than the log's, or
// that entries after it were trimmed (fn then gets what is left). An empty
// from counts as lost as soon as anything was ever published.
func (b *Broker) Replay(ctx context.Context, from, to sente.Position, fn func(sente.Push)) (lost bool, err error) {
	if err := b.alive(); err != nil {
		return false, err
	}
	st, err := b.state(ctx, "")
	if err != nil {
		return false, fmt.Errorf("redis broker: replay: %w", err)
	}
	if from.IsZero() {
		return st.exists && st.added > 0, nil
	}
	if !st.exists || from.Epoch != st.epoch || to.Epoch != from.Epoch {
		return true, nil
	}
	if to.Seq <= from.Seq {
		return false, nil
	}
	fromID, toID := seqID(from.Seq), seqID(to.Seq)
	const page = 1000
	start := "(" + fromID
	for {
		msgs, err := b.rdb.XRangeN(ctx, b.keys.log, start, toID, page).Result()
		if err != nil {
			return false, fmt.Errorf("redis broker: replay: %w", err)
		}
		for _, m := range msgs {
			p, epoch, err := parseEntry(m)
			switch {
			case err != nil:
				b.log.Warn("redis broker: skipping a corrupt log entry", "key", b.keys.log, "id", m.ID, "err", err)
			case epoch == from.Epoch:
				p.Pos.Epoch = epoch
				fn(p)
			}
		}
		if len(msgs) < page {
			break
		}
		start = "(" + msgs[len(msgs)-1].ID
	}
	// Checked after reading, the state tells whether anything after from
	// was gone before or during it.
	st, err = b.state(ctx, "")
	if err != nil {
		return false, fmt.Errorf("redis broker: replay: %w", err)
	}
	return !st.exists || st.epoch != from.Epoch || st.lostAfter(fromID), nil
}

// A reader delivers the log to one node, with a connection of its own.
type reader struct {
	b      *Broker
	rdb    *goredis.Client
	h      sente.Handler
	epoch  string          // of the pushes delivered
	cursor string          // id of the last entry read
	old    map[string]bool // epochs left behind, or foreign
	seen   string          // corrupt entries up to it were logged already
	behind bool            // the log was trimmed past the cursor
	gap    bool            // the next push delivered follows missed ones
}

// read delivers the log to h from the entry after cursor, which is of
// epoch, until ctx ends.
func (b *Broker) read(ctx context.Context, h sente.Handler, epoch, cursor string) {
	ro := *b.ropts
	ro.PoolSize, ro.MinIdleConns, ro.MaxIdleConns = 1, 0, 1
	r := &reader{b: b, rdb: goredis.NewClient(&ro), h: h, epoch: epoch, cursor: cursor, old: map[string]bool{}, seen: "0-0"}
	defer r.rdb.Close()
	// Closing the client interrupts a blocked XREAD.
	defer context.AfterFunc(ctx, func() { r.rdb.Close() })()

	level := 0
	for ctx.Err() == nil {
		// Each read first looks whether the log was trimmed past the
		// cursor: the node fell more than History pushes behind (or was
		// cut off for that long), and missed pushes.
		pipe := r.rdb.Pipeline()
		info := pipe.XInfoStream(ctx, b.keys.log)
		read := pipe.XRead(ctx, &goredis.XReadArgs{
			Streams: []string{b.keys.log, r.cursor},
			Count:   512,
			Block:   2 * time.Second,
		})
		pipe.Exec(ctx)
		if i, err := info.Result(); err == nil {
			r.checkTrimmed(i)
		}
		res, err := read.Result()
		switch {
		case err == goredis.Nil:
			r.idle(ctx)
		case err != nil:
			if ctx.Err() != nil {
				return
			}
			level++
			b.log.Warn("redis broker: reading the log", "key", b.keys.log, "attempt", level, "err", err)
			if !b.sleep(ctx, level) {
				return
			}
		default:
			if level > 0 {
				b.log.Info("redis broker: reading the log again", "key", b.keys.log)
				level = 0
			}
			for _, s := range res {
				if !r.deliver(ctx, s.Messages) {
					break
				}
			}
		}
	}
}

// checkTrimmed logs when the log was trimmed past the cursor.
func (r *reader) checkTrimmed(i *goredis.XInfoStream) {
	if r.cursor == "0-0" {
		return // reading from the start
	}
	st := logState{last: i.LastGeneratedID, maxDeleted: i.MaxDeletedEntryID, added: i.EntriesAdded, length: i.Length, first: i.FirstEntry.ID}
	lost := st.lostAfter(r.cursor)
	if lost && !r.behind {
		r.gap = true
		r.b.log.Error("redis broker: this node fell behind the log, which was trimmed past it: pushes may be missing (raise History?)",
			"key", r.b.keys.log, "node", r.b.node, "at", r.cursor, "first", st.first)
	}
	r.behind = lost
}

// idle looks, when no entry came for a while, whether the history was
// replaced by one whose ids are not after the cursor.
func (r *reader) idle(ctx context.Context) {
	cur, err := r.rdb.Get(ctx, r.b.keys.epoch).Result()
	if err == nil && cur != r.epoch && !r.old[cur] {
		r.switchTo(cur, r.cursor)
	}
}

// switchTo goes on with the history of epoch from the stream's start,
// skipping the entries of older epochs (new-epoch entries follow them).
func (r *reader) switchTo(epoch, seen string) {
	r.b.log.Info("redis broker: new epoch", "key", r.b.keys.epoch, "from", r.epoch, "to", epoch)
	if len(r.old) > 1000 {
		clear(r.old) // foreign epochs galore: forget them
	}
	r.old[r.epoch] = true
	r.epoch, r.seen, r.cursor = epoch, seen, "0-0"
	// Entries of the old history this node had not read yet are gone with
	// it: the server makes its clients resume, and they are told.
	r.gap = true
}

// deliver hands entries to the node, reporting false when it must read
// again from the cursor (after an epoch change or an error).
func (r *reader) deliver(ctx context.Context, msgs []goredis.XMessage) bool {
	quiet := func(id string) bool { return compareIDs(id, r.seen) <= 0 }
	for _, m := range msgs {
		p, e, err := parseEntry(m)
		if err != nil {
			if !quiet(m.ID) {
				r.b.log.Warn("redis broker: skipping a corrupt log entry", "key", r.b.keys.log, "id", m.ID, "err", err)
			}
			r.cursor = m.ID
			continue
		}
		if e != r.epoch {
			if r.old[e] {
				r.cursor = m.ID
				continue
			}
			cur, err := r.rdb.Get(ctx, r.b.keys.epoch).Result()
			if err != nil && err != goredis.Nil {
				return false
			}
			if e != cur {
				if !quiet(m.ID) {
					r.b.log.Warn("redis broker: skipping a log entry of an unknown epoch", "key", r.b.keys.log, "id", m.ID, "epoch", e)
				}
				r.old[e] = true
				r.cursor = m.ID
				continue
			}
			r.switchTo(e, m.ID)
			return false
		}
		r.cursor = m.ID
		p.Pos.Epoch = e
		p.Gap, r.gap = r.gap, false
		r.h.Push(p)
	}
	return true
}

// sleep waits before the attempt after a failure at level, or until ctx
// ends (then false).
func (b *Broker) sleep(ctx context.Context, level int) bool {
	t := time.NewTimer(wsasync.Backoff(level, 50*time.Millisecond, min(2*time.Second, b.opts.NodeTTL/3), rand.Float64()))
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// packPush appends p's form in the log to buf.
func packPush(buf []byte, p *sente.Push) []byte {
	flush := byte('0')
	if p.Flush {
		flush = '1'
	}
	buf = append(buf, '0'+byte(p.Target), flush)
	buf = strconv.AppendInt(buf, int64(len(p.To)), 10)
	buf = append(buf, ':')
	buf = append(buf, p.To...)
	return append(buf, p.Event...)
}

// parseEntry reads a log entry; Pos.Epoch is left to the caller.
func parseEntry(m goredis.XMessage) (p sente.Push, epoch string, err error) {
	seq, ok := idSeq(m.ID)
	if !ok {
		return p, "", errors.New("stream id out of range")
	}
	epoch, _ = m.Values["e"].(string)
	s, ok := m.Values["p"].(string)
	if epoch == "" || !ok || len(m.Values) != 2 {
		return p, "", errors.New("not an entry of the broker")
	}
	if len(s) < 4 || s[0] < '1' || s[0] > '3' || (s[1] != '0' && s[1] != '1') {
		return p, "", fmt.Errorf("bad push %.20q", s)
	}
	colon := strings.IndexByte(s[2:], ':') + 2
	n := -1
	if colon >= 3 {
		n, err = strconv.Atoi(s[2:colon])
	}
	if err != nil || n < 0 || n > len(s)-colon-1 {
		return p, "", fmt.Errorf("bad push %.20q", s)
	}
	p.Target = sente.Target(s[0] - '0')
	p.Flush = s[1] == '1'
	p.To = strings.Clone(s[colon+1 : colon+1+n]) // not to keep s
	p.Event = []byte(s[colon+1+n:])
	p.Pos.Seq = seq
	return p, epoch, nil
}

// splitID reads a stream id "ms-n".
func splitID(id string) (ms, n uint64, ok bool) {
	a, c, found := strings.Cut(id, "-")
	if !found {
		return 0, 0, false
	}
	ms, err1 := strconv.ParseUint(a, 10, 64)
	n, err2 := strconv.ParseUint(c, 10, 64)
	return ms, n, err1 == nil && err2 == nil
}

// idSeq packs a stream id as a position's Seq.
func idSeq(id string) (uint64, bool) {
	ms, n, ok := splitID(id)
	if !ok || n >= 1<<seqBits || ms >= 1<<(64-seqBits) {
		return 0, false
	}
	return ms<<seqBits | n, true
}

// seqID is the stream id of a position's Seq.
func seqID(seq uint64) string {
	return strconv.FormatUint(seq>>seqBits, 10) + "-" + strconv.FormatUint(seq&(1<<seqBits-1), 10)
}

// compareIDs compares stream ids; a malformed one counts as the greatest.
func compareIDs(a, b string) int {
	am, an, aok := splitID(a)
	bm, bn, bok := splitID(b)
	switch {
	case !aok || !bok:
		if aok == bok {
			return 0
		}
		if aok {
			return -1
		}
		return 1
	case am != bm:
		if am < bm {
			return -1
		}
		return 1
	case an != bn:
		if an < bn {
			return -1
		}
		return 1
	}
	return 0
}
