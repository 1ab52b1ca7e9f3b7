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
//	p   the pushes that one publish call sent together, each packed as
//	    "<target><flush><len(to)>:<len(event)>:<to><event>", target being
//	    1 (user), 2 (client) or 3 (all), flush 1 or 0, for example
//	    `104:15:ada1["chat/msg","hi"]`
//
// (One entry per batch rather than per push: reading an entry costs far
// more than unpacking a push, and every node reads every entry.)
//
// The epoch lives in <prefix>:epoch. A script renews it whenever that key
// or the stream is missing (a restart without persistence, a deleted
// stream): entries of a new epoch always follow those of an older one in
// the stream. Push k of the entry with stream id "ms-n" is at Seq
// ms<<22 | n<<10 | k; the publish script keeps n below 2^12 (see
// publishLua) and a batch holds at most maxBatch ≤ 2^10 pushes.

const (
	pushBits  = 10 // k, the push within its entry
	entryBits = 12 // n, the sequence part of the entry's id
	// maxBatch bounds the pushes of one entry (one publish script call).
	maxBatch = 512
	// lastPush is the k of "every push of the entry".
	lastPush = 1<<pushBits - 1
)

// epochLua leaves the current epoch in the local epoch, renewing it to
// ARGV[1] when the epoch key or the stream (KEYS[1]) is missing.
const epochLua = `
local epoch = redis.call('GET', KEYS[2])
if not epoch or redis.call('EXISTS', KEYS[1]) == 0 then
  epoch = ARGV[1]
  redis.call('SET', KEYS[2], epoch)
end
`

// publishLua appends a batch of pushes to the log as one entry and trims
// the log. KEYS: log, epoch. ARGV: new epoch, max entries, max age in ms,
// the packed pushes. When the sequence part of the id reaches 2^12 - 1
// (more than 4,095 entries in one millisecond of the server's clock, or
// its clock stepping back), it moves the stream's last id to the next
// millisecond, so that sequence parts stay below 2^12.
var publishLua = goredis.NewScript(epochLua + `
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'e', epoch, 'p', ARGV[4])
local ms, n = string.match(id, '^(%d+)-(%d+)$')
if tonumber(n) >= ` + strconv.Itoa(1<<entryBits-1) + ` then
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

// Publish appends p to the log; every subscribed node, this one included,
// receives it. Concurrent calls share one script call (one round trip) and
// one log entry.
// When ctx ends first, Publish returns ctx's error, but a push already sent
// may still reach the log.
func (b *Broker) Publish(ctx context.Context, p sente.Push) error {
	if p.Target < sente.ToUser || p.Target > sente.ToAll {
		return fmt.Errorf("redis broker: publish: invalid target %d", p.Target)
	}
	// Packed here, in the caller's goroutine: once Publish returns (its
	// ctx may end before the push is sent), p is the caller's again.
	push := packPush(make([]byte, 0, 32+len(p.To)+len(p.Event)), &p)
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
		batch  []*pubReq
		args   []any
		pushes []byte // the batch's, packed: one entry
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
		pushes = pushes[:0]
		n := 0
		for _, r := range batch {
			if err := r.ctx.Err(); err != nil {
				r.done <- err // given up: not sent
				continue
			}
			pushes = append(pushes, r.push...)
			batch[n] = r
			n++
		}
		if n == 0 {
			continue
		}
		args = append(args[:0], sente.NewEpoch(), b.keys.historyArg, b.keys.ageArg, pushes)
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
		clear(args)
		clear(batch)
		if cap(pushes) > 1<<20 {
			pushes = nil // a burst of large pushes: let the buffer go
		}
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
	// From the entry holding from (its later pushes) to the one holding to.
	fromID, toID := seqID(from.Seq), seqID(to.Seq)
	const page = 1000
	start := fromID
	for {
		msgs, err := b.rdb.XRangeN(ctx, b.keys.log, start, toID, page).Result()
		if err != nil {
			return false, fmt.Errorf("redis broker: replay: %w", err)
		}
		for _, m := range msgs {
			ps, epoch, err := parseEntry(m)
			switch {
			case err != nil:
				b.log.Warn("redis broker: skipping a corrupt log entry", "key", b.keys.log, "id", m.ID, "err", err)
			case epoch == from.Epoch:
				for _, p := range ps {
					if p.Pos.Seq > from.Seq && p.Pos.Seq <= to.Seq {
						p.Pos.Epoch = epoch
						fn(p)
					}
				}
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
		// cursor: the node fell more than History entries behind (or was
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
		ps, e, err := parseEntry(m)
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
		for _, p := range ps {
			p.Pos.Epoch = e
			p.Gap, r.gap = r.gap, false
			r.h.Push(p)
		}
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
	buf = strconv.AppendInt(buf, int64(len(p.Event)), 10)
	buf = append(buf, ':')
	buf = append(buf, p.To...)
	return append(buf, p.Event...)
}

// parseEntry reads a log entry: its pushes, with their Pos.Seq (Pos.Epoch
// is left to the caller), and its epoch. A corrupt entry gives no push.
func parseEntry(m goredis.XMessage) (ps []sente.Push, epoch string, err error) {
	seq, ok := idSeq(m.ID)
	if !ok {
		return nil, "", errors.New("stream id out of range")
	}
	epoch, _ = m.Values["e"].(string)
	s, ok := m.Values["p"].(string)
	if epoch == "" || !ok || len(m.Values) != 2 {
		return nil, "", errors.New("not an entry of the broker")
	}
	// One copy for the entry: the events share it.
	buf := []byte(s)
	for k := 0; len(buf) > 0; k++ {
		if k == maxBatch {
			return nil, "", fmt.Errorf("more than %d pushes", maxBatch)
		}
		var p sente.Push
		if p, buf, err = parsePush(buf); err != nil {
			return nil, "", err
		}
		p.Pos.Seq = seq | uint64(k)
		ps = append(ps, p)
	}
	if len(ps) == 0 {
		return nil, "", errors.New("no push")
	}
	return ps, epoch, nil
}

// parsePush reads the push at the start of buf, returning the rest.
func parsePush(buf []byte) (p sente.Push, rest []byte, err error) {
	bad := func() (sente.Push, []byte, error) { return p, nil, fmt.Errorf("bad push %.20q", buf) }
	if len(buf) < 6 || buf[0] < '1' || buf[0] > '3' || (buf[1] != '0' && buf[1] != '1') {
		return bad()
	}
	i := 2
	length := func() int { // reads "<digits>:", -1 if malformed
		n, j := 0, i
		for ; j < len(buf) && j-i < 10 && buf[j] >= '0' && buf[j] <= '9'; j++ {
			n = n*10 + int(buf[j]-'0')
		}
		if j == i || j == len(buf) || buf[j] != ':' {
			return -1
		}
		i = j + 1
		return n
	}
	nTo := length()
	if nTo < 0 {
		return bad()
	}
	nEv := length()
	if nEv < 0 || nTo > len(buf)-i || nEv > len(buf)-i-nTo {
		return bad()
	}
	p.Target = sente.Target(buf[0] - '0')
	p.Flush = buf[1] == '1'
	p.To = string(buf[i : i+nTo])
	i += nTo
	p.Event = buf[i : i+nEv : i+nEv]
	return p, buf[i+nEv:], nil
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

// idSeq is the Seq of the first push of the entry with stream id id.
func idSeq(id string) (uint64, bool) {
	ms, n, ok := splitID(id)
	if !ok || n >= 1<<entryBits || ms >= 1<<(64-entryBits-pushBits) {
		return 0, false
	}
	return ms<<(entryBits+pushBits) | n<<pushBits, true
}

// seqID is the stream id of the entry holding a position's Seq.
func seqID(seq uint64) string {
	return strconv.FormatUint(seq>>(entryBits+pushBits), 10) + "-" + strconv.FormatUint(seq>>pushBits&(1<<entryBits-1), 10)
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
