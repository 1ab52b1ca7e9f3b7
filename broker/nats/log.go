package nats

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/wsasync/wsasync/sente"
)

// The log is the stream <prefix>_LOG on the subject <prefix>.log. Each
// message is a batch of the pushes published together: the byte
// formatV1, then per push its target, a flags byte (1: Flush), the
// uvarint length of To, To, the uvarint length of Event, Event. Push k
// (from 1) of the message of stream sequence s is at Seq s<<idxBits | k;
// Seq s<<idxBits stands for the point after message s-1. The stream's
// description holds the epoch: a recreated stream has a new one.
const (
	idxBits       = 12
	idxMask       = 1<<idxBits - 1
	maxRecords    = idxMask  // pushes in one message
	maxBatchBytes = 64 << 10 // a batch stops growing past this
	inFlight      = 2        // batches awaiting their ack at once
	formatV1      = 0xB1
	epochTag      = "wsasync sente log, epoch "
)

var (
	errCorrupt      = errors.New("not a log entry of this broker")
	errNotConnected = errors.New("not connected to NATS")
	errGap          = errors.New("delivery gap (messages lost in transit)")
	errReplaced     = errors.New("log stream replaced meanwhile")
	errReconnected  = errors.New("connection restored")
)

// appendRecord appends p's record to buf.
func appendRecord(buf []byte, p sente.Push) []byte {
	var flags byte
	if p.Flush {
		flags = 1
	}
	buf = append(buf, byte(p.Target), flags)
	buf = binary.AppendUvarint(buf, uint64(len(p.To)))
	buf = append(buf, p.To...)
	buf = binary.AppendUvarint(buf, uint64(len(p.Event)))
	return append(buf, p.Event...)
}

// decode appends to out the pushes of the message of stream sequence seq,
// or nothing when data is not a well-formed batch. The events share data.
func decode(out []sente.Push, data []byte, epoch string, seq uint64) ([]sente.Push, error) {
	if len(data) == 0 || data[0] != formatV1 {
		return out, fmt.Errorf("%w: unknown format", errCorrupt)
	}
	start := len(out)
	data = data[1:]
	for k := uint64(1); len(data) > 0; k++ {
		if k > maxRecords || len(data) < 2 {
			return out[:start], fmt.Errorf("%w: truncated", errCorrupt)
		}
		t, flags := sente.Target(data[0]), data[1]
		if t < sente.ToUser || t > sente.ToAll || flags > 1 {
			return out[:start], fmt.Errorf("%w: bad target or flags", errCorrupt)
		}
		to, rest, ok := field(data[2:])
		if !ok {
			return out[:start], fmt.Errorf("%w: bad length", errCorrupt)
		}
		ev, rest, ok := field(rest)
		if !ok {
			return out[:start], fmt.Errorf("%w: bad length", errCorrupt)
		}
		out = append(out, sente.Push{
			Target: t,
			To:     string(to),
			Event:  ev,
			Flush:  flags == 1,
			Pos:    sente.Position{Epoch: epoch, Seq: seq<<idxBits | k},
		})
		data = rest
	}
	if len(out) == start {
		return out, fmt.Errorf("%w: empty", errCorrupt)
	}
	return out, nil
}

// field reads a uvarint length and that many bytes.
func field(b []byte) (f, rest []byte, ok bool) {
	n, w := binary.Uvarint(b)
	if w <= 0 || n > uint64(len(b)-w) {
		return nil, nil, false
	}
	end := w + int(n)
	return b[w:end:end], b[end:], true
}

// publisher gathers concurrent Publish calls into batches: one message and
// one ack per batch. Up to inFlight batches await their ack at once; the
// next one fills meanwhile, and is sent by the ack that frees a slot. A
// batch is sent by the Publish call that finds a free slot, or by the ack
// handler: no goroutine of its own stands between callers and NATS.
type publisher struct {
	mu       sync.Mutex
	queue    []*batch             // waiting to be sent; the last one fills
	inflight map[*nats.Msg]*batch // sent, awaiting their ack
	closed   bool
}

type batch struct {
	buf  []byte
	n    int
	done chan struct{} // closed when err is set
	err  error
}

func (bt *batch) finish(err error) {
	bt.err = err
	close(bt.done)
}

// add puts p in the filling batch and returns that batch, and a message to
// send now if a slot is free.
func (q *publisher) add(p sente.Push) (*batch, *nats.Msg, error) {
	size := 2 + 2*binary.MaxVarintLen64 + len(p.To) + len(p.Event)
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil, nil, errClosed
	}
	var bt *batch
	if n := len(q.queue); n > 0 {
		bt = q.queue[n-1]
		if bt.n >= maxRecords || len(bt.buf)+size > maxBatchBytes {
			bt = nil
		}
	}
	if bt == nil {
		bt = &batch{buf: make([]byte, 1, max(size+1, 512)), done: make(chan struct{})}
		bt.buf[0] = formatV1
		q.queue = append(q.queue, bt)
	}
	bt.buf = appendRecord(bt.buf, p)
	bt.n++
	return bt, q.nextLocked(), nil
}

// nextLocked takes the oldest waiting batch if a slot is free, and returns
// its message, now in flight.
func (q *publisher) nextLocked() *nats.Msg {
	if q.closed || len(q.queue) == 0 || len(q.inflight) >= inFlight {
		return nil
	}
	bt := q.queue[0]
	q.queue[0] = nil
	q.queue = q.queue[1:]
	m := &nats.Msg{Data: bt.buf}
	q.inflight[m] = bt
	return m
}

// settle ends m's batch with err and returns the next message to send.
func (q *publisher) settle(m *nats.Msg, err error) *nats.Msg {
	q.mu.Lock()
	defer q.mu.Unlock()
	if bt, ok := q.inflight[m]; ok {
		delete(q.inflight, m)
		bt.finish(err)
	}
	return q.nextLocked()
}

// shut fails every batch and refuses new ones.
func (q *publisher) shut() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.closed = true
	for _, bt := range q.queue {
		bt.finish(errClosed)
	}
	for _, bt := range q.inflight {
		bt.finish(errClosed)
	}
	q.queue, q.inflight = nil, nil
}

// Publish appends p to the log. Concurrent calls share messages and round
// trips; each returns when its batch is acknowledged by JetStream, or
// fails at once when the connection is down.
func (b *Broker) Publish(ctx context.Context, p sente.Push) error {
	if p.Target < sente.ToUser || p.Target > sente.ToAll {
		return fmt.Errorf("nats broker: publish: unknown target %d", p.Target)
	}
	if !b.nc.IsConnected() {
		return fmt.Errorf("nats broker: publish: %w (%s)", errNotConnected, b.nc.Status())
	}
	bt, m, err := b.pub.add(p)
	if err != nil {
		return fmt.Errorf("nats broker: publish: %w", err)
	}
	b.send(m)
	select {
	case <-bt.done:
		if bt.err != nil {
			return fmt.Errorf("nats broker: publish: %w", bt.err)
		}
		return nil
	case <-ctx.Done():
		return fmt.Errorf("nats broker: publish: %w", ctx.Err())
	}
}

// send sends m (if not nil) and, while sends fail at once, the next ones.
func (b *Broker) send(m *nats.Msg) {
	for m != nil {
		m.Subject = b.subj
		_, err := b.js.PublishMsgAsync(m, jetstream.WithRetryAttempts(0))
		if err == nil {
			return
		}
		m = b.pub.settle(m, err)
	}
}

// acked is the async publish handler: it settles m's batch and sends the
// next one. When the stream is missing it makes a new one (a new epoch) and
// publishes there, in a goroutine of its own so as not to hold up other
// acks.
func (b *Broker) acked(m *nats.Msg, err error) {
	if errors.Is(err, jetstream.ErrNoStreamResponse) {
		b.pub.mu.Lock()
		closed := b.pub.closed
		if !closed {
			b.wg.Add(1)
		}
		b.pub.mu.Unlock()
		if !closed {
			go func() {
				defer b.wg.Done()
				b.send(b.pub.settle(m, b.republish(m.Data)))
			}()
			return
		}
	}
	b.send(b.pub.settle(m, err))
}

// republish makes the stream again and publishes data to it.
func (b *Broker) republish(data []byte) error {
	ctx, cancel := context.WithTimeout(b.ctx, requestTimeout)
	defer cancel()
	if _, _, err := b.streamInfo(ctx, true); err != nil {
		return err
	}
	_, err := b.js.PublishMsg(ctx, &nats.Msg{Subject: b.subj, Data: data})
	return err
}

// streamInfo returns the log stream's state and epoch. With create, a
// missing stream is made, with a new epoch.
func (b *Broker) streamInfo(ctx context.Context, create bool) (*jetstream.StreamInfo, string, error) {
	s, err := b.js.Stream(ctx, b.stream)
	if errors.Is(err, jetstream.ErrStreamNotFound) && create {
		epoch := sente.NewEpoch()
		s, err = b.js.CreateStream(ctx, jetstream.StreamConfig{
			Name:        b.stream,
			Description: epochTag + epoch,
			Subjects:    []string{b.subj},
			Retention:   jetstream.LimitsPolicy,
			MaxMsgs:     int64(b.opts.History),
			MaxAge:      b.opts.HistoryAge,
			Discard:     jetstream.DiscardOld,
			Storage:     jetstream.FileStorage,
			Replicas:    1,
		})
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) { // made meanwhile by another node
			s, err = b.js.Stream(ctx, b.stream)
		} else if err == nil {
			b.log.Info("nats broker: log stream created", "stream", b.stream, "epoch", epoch)
		}
	}
	if err != nil {
		return nil, "", fmt.Errorf("nats broker: log stream %s: %w", b.stream, err)
	}
	info := s.CachedInfo()
	epoch, ok := strings.CutPrefix(info.Config.Description, epochTag)
	if !ok || epoch == "" || strings.ContainsAny(epoch, ". ") {
		// Not made by this package: its creation time names its history.
		epoch = "c" + strconv.FormatInt(info.Created.UnixNano(), 36)
		if !b.warned.Swap(true) {
			b.log.Warn("nats broker: log stream has no epoch in its description; using its creation time", "stream", b.stream, "epoch", epoch)
		}
	}
	return info, epoch, nil
}

// open makes an ephemeral consumer of the log from stream sequence start
// and checks that the stream still has the given epoch, so that the
// consumer reads that history.
func (b *Broker) open(ctx context.Context, epoch string, start uint64) (jetstream.Consumer, error) {
	cons, err := b.js.CreateConsumer(ctx, b.stream, jetstream.ConsumerConfig{
		DeliverPolicy:     jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:       max(start, 1),
		AckPolicy:         jetstream.AckNonePolicy,
		MemoryStorage:     true,
		InactiveThreshold: 30 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("nats broker: log consumer: %w", err)
	}
	if _, now, err := b.streamInfo(ctx, false); err != nil || now != epoch {
		b.drop(cons)
		if err == nil {
			err = errReplaced
		}
		return nil, err
	}
	return cons, nil
}

// drop deletes a consumer; the server would after its inactive threshold.
func (b *Broker) drop(cons jetstream.Consumer) {
	if !b.nc.IsConnected() {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = b.js.DeleteConsumer(ctx, b.stream, cons.CachedInfo().Name)
}

// cursor is where a node's delivery stands.
type cursor struct {
	epoch   string    // "" before the log could be read: start at its end
	created time.Time // when the stream read was made: which stream it is
	seq     uint64    // stream sequence of the last message delivered
	gap     bool      // the next push delivered follows pushes this node missed
}

// resume decides where delivery goes on from cur, on the stream made at
// created whose description holds epoch and whose last message is last.
// rotate reports a history that changed without its epoch showing it: the
// stream was made again with the same description, or its sequence went
// back below what this node delivered (the server lost messages it had
// acknowledged). Its sequence numbers then name other pushes than before,
// so the caller gives it a new epoch, which makes every position taken
// before it lost.
func resume(cur cursor, epoch string, created time.Time, last uint64) (next cursor, rotate bool, why string) {
	same := created.Equal(cur.created)
	switch {
	case cur.epoch == "":
		return cursor{epoch: epoch, created: created, seq: last}, false, ""
	case !same:
		// Another stream: its whole history is new to this node.
		return cursor{epoch: epoch, created: created, gap: true}, cur.epoch == epoch, "the log was replaced: delivering it from its start"
	case cur.epoch != epoch:
		// The same stream, renamed by a node that found it went back.
		return cursor{epoch: epoch, created: created, seq: min(cur.seq, last), gap: true}, false, "the log's epoch changed: delivering from where it stands"
	case last < cur.seq:
		return cursor{epoch: epoch, created: created, seq: last, gap: true}, true, "the log went back below what this node delivered: pushes lost"
	}
	return cur, false, ""
}

// rotate gives the stream a new epoch, unless its description no longer
// holds old (another node rotated it meanwhile), and returns the epoch it
// has then.
func (b *Broker) rotate(ctx context.Context, old string) (string, error) {
	s, err := b.js.Stream(ctx, b.stream)
	if err != nil {
		return "", fmt.Errorf("nats broker: log stream %s: %w", b.stream, err)
	}
	cfg := s.CachedInfo().Config
	if cur, _ := strings.CutPrefix(cfg.Description, epochTag); cur != old {
		_, epoch, err := b.streamInfo(ctx, false)
		return epoch, err
	}
	epoch := sente.NewEpoch()
	cfg.Description = epochTag + epoch
	if _, err := b.js.UpdateStream(ctx, cfg); err != nil {
		return "", fmt.Errorf("nats broker: new epoch for log stream %s: %w", b.stream, err)
	}
	b.log.Warn("nats broker: log stream given a new epoch", "stream", b.stream, "old", old, "epoch", epoch)
	return epoch, nil
}

// read delivers the log to h from after cur until ctx ends, opening a new
// consumer (after a backoff) whenever one fails.
func (b *Broker) read(ctx context.Context, h sente.Handler, cur cursor) {
	level := 0
	for {
		n, err := b.readOnce(ctx, h, &cur)
		if ctx.Err() != nil {
			return
		}
		if n > 0 {
			level = 0
		}
		level++
		if !errors.Is(err, errReconnected) {
			b.log.Warn("nats broker: log delivery interrupted; resuming", "after", cur.seq, "err", err)
		}
		if !sleep(ctx, backoff(level, loopBackoffMax)) {
			return
		}
	}
}

// readOnce delivers through one consumer until it fails, and returns how
// many messages it delivered.
func (b *Broker) readOnce(ctx context.Context, h sente.Handler, cur *cursor) (n int, err error) {
	rc := b.reconnected()
	info, epoch, err := b.streamInfo(ctx, true)
	if err != nil {
		return 0, err
	}
	// What a replaced or rewound history held that this node had not
	// read is gone: the next push delivered carries Gap, and the server
	// makes its clients resume, which tells them.
	next, rotate, why := resume(*cur, epoch, info.Created, info.State.LastSeq)
	if why != "" {
		b.log.Warn("nats broker: "+why, "stream", b.stream, "epoch", cur.epoch, "now", epoch, "after", cur.seq, "last", info.State.LastSeq)
	}
	if rotate {
		if next.epoch, err = b.rotate(ctx, epoch); err != nil {
			return 0, err
		}
		epoch = next.epoch
	}
	if cur.epoch != "" && next.epoch == cur.epoch && next.seq == cur.seq &&
		info.State.Msgs > 0 && info.State.FirstSeq > cur.seq+1 {
		b.log.Warn("nats broker: log trimmed past this node's position: pushes lost", "after", cur.seq, "first", info.State.FirstSeq)
	}
	*cur = next
	cons, err := b.open(ctx, epoch, cur.seq+1)
	if err != nil {
		return 0, err
	}
	defer b.drop(cons)
	it, err := cons.Messages(
		jetstream.PullMaxMessages(256),
		jetstream.PullExpiry(5*time.Second),
		jetstream.PullHeartbeat(time.Second),
		jetstream.WithMessagesErrOnMissingHeartbeat(true),
	)
	if err != nil {
		return 0, fmt.Errorf("nats broker: log consumer: %w", err)
	}
	var reconnected atomic.Bool
	stop, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-ctx.Done():
		case <-rc:
			reconnected.Store(true)
		case <-stop:
		}
		it.Stop()
	}()
	defer func() {
		close(stop)
		<-stopped
	}()
	var (
		cseq   uint64
		pushes []sente.Push
	)
	for {
		m, err := it.Next()
		if err != nil {
			if reconnected.Load() {
				err = errReconnected
			}
			return n, err
		}
		md, err := m.Metadata()
		if err != nil {
			return n, err
		}
		if md.Sequence.Consumer != cseq+1 {
			return n, fmt.Errorf("%w: message %d after %d", errGap, md.Sequence.Consumer, cseq)
		}
		cseq = md.Sequence.Consumer
		s := md.Sequence.Stream
		if s <= cur.seq {
			continue
		}
		gap := s != cur.seq+1 || cur.gap
		cur.gap = false
		if s != cur.seq+1 {
			b.log.Warn("nats broker: log trimmed before this node read it: pushes lost", "after", cur.seq, "next", s)
		}
		pushes, err = decode(pushes[:0], m.Data(), epoch, s)
		if err != nil {
			b.log.Error("nats broker: corrupt log entry skipped", "stream", b.stream, "seq", s, "err", err)
		}
		for i, p := range pushes {
			p.Gap = gap && i == 0 // the server makes its clients resume, and be told
			h.Push(p)
		}
		clear(pushes)
		cur.seq = s
		n++
	}
}

// replayWait bounds each wait of Replay for the next messages.
const replayWait = 3 * time.Second

// Replay calls fn with the pushes after from up to to, reading the stream
// from the message that holds from. lost reports that from is of another
// epoch or that messages after it were trimmed.
func (b *Broker) Replay(ctx context.Context, from, to sente.Position, fn func(sente.Push)) (bool, error) {
	info, epoch, err := b.streamInfo(ctx, false)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return true, nil // the history is gone
	}
	if err != nil {
		return true, fmt.Errorf("nats broker: replay: %w", err)
	}
	if from.Epoch != epoch {
		return !from.IsZero() || info.State.LastSeq > 0, nil
	}
	if to.Epoch != epoch {
		return true, nil
	}
	first := max(from.Seq>>idxBits, 1) // the message holding from
	last := to.Seq >> idxBits          // the message holding to
	if to.Seq&idxMask == 0 {
		last-- // to is the point after a message
	}
	if to.Seq <= from.Seq || last < first {
		return false, nil
	}
	cons, err := b.open(ctx, epoch, first)
	if err != nil {
		return true, fmt.Errorf("nats broker: replay: %w", err)
	}
	defer b.drop(cons)
	var (
		lost   bool
		next   = first
		pushes []sente.Push
	)
	for next <= last {
		if err := ctx.Err(); err != nil {
			return true, fmt.Errorf("nats broker: replay: %w", err)
		}
		// A fetch that waits: under load a no-wait fetch can come back
		// empty although the messages are there, which read as a log that
		// ends early (a false "lost").
		mb, err := cons.Fetch(int(min(last-next+1, 256)), jetstream.FetchMaxWait(replayWait))
		if err != nil {
			return true, fmt.Errorf("nats broker: replay: %w", err)
		}
		got := 0
		for m := range mb.Messages() {
			got++
			md, err := m.Metadata()
			if err != nil {
				continue
			}
			s := md.Sequence.Stream
			if s < next {
				continue
			}
			lost = lost || s != next // trimmed, or a gap
			next = s + 1
			if s > last {
				continue // what was up to last is gone; the loop ends
			}
			pushes, err = decode(pushes[:0], m.Data(), epoch, s)
			if err != nil {
				b.log.Error("nats broker: corrupt log entry skipped", "stream", b.stream, "seq", s, "err", err)
			}
			for _, p := range pushes {
				if p.Pos.Seq > from.Seq && p.Pos.Seq <= to.Seq {
					fn(p)
				}
			}
		}
		if err := mb.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) {
			return true, fmt.Errorf("nats broker: replay: %w", err)
		}
		if got == 0 {
			return true, nil // nothing within replayWait: the log ends before to
		}
	}
	return lost, nil
}
