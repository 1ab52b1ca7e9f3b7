package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strconv"
	"sync"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/redis/go-redis/v9/maintnotifications"

	"github.com/wsasync/wsasync/sente"
)

// Options configure a [Broker]. The zero value is ready to use.
type Options struct {
	// Prefix starts every key the broker uses, so that several
	// applications (or tests) can share one Redis database. Default
	// "sente".
	Prefix string
	// History bounds the log: it keeps about the last History entries,
	// each holding the pushes that one node published together (one push
	// when pushes are rare; up to 512 under load). Redis trims whole
	// stream nodes, 100 entries by default, so up to that many more stay.
	// A node that falls further behind than that misses pushes. Default
	// 10,000.
	History int
	// HistoryAge bounds the log by age: older pushes are trimmed when
	// later ones are published. Default 2 minutes.
	HistoryAge time.Duration
	// NodeTTL is how long a node stays alive in the others' eyes without
	// refreshing its liveness record, which it does every NodeTTL/3 while
	// subscribed. Default 10 s.
	NodeTTL time.Duration
	// Logger receives what the broker cannot report to a caller: entries
	// it skips, outages of its background loops. Default slog.Default().
	Logger *slog.Logger
}

// Defaults of [Options].
const (
	DefaultPrefix     = "sente"
	DefaultHistory    = 10_000
	DefaultHistoryAge = 2 * time.Minute
	DefaultNodeTTL    = 10 * time.Second
)

// ErrClosed is returned by the methods of a closed [Broker].
var ErrClosed = errors.New("redis broker: closed")

// Broker is a [sente.Broker] on Redis, for one node of a cluster: pass one
// Broker value to one sente.Server. Its methods are safe for concurrent
// use.
type Broker struct {
	opts   Options
	log    *slog.Logger
	ropts  *goredis.Options // for the reader's own connection
	rdb    *goredis.Client
	node   string
	keys   keys
	ctx    context.Context // ends with Close
	cancel context.CancelFunc
	wg     sync.WaitGroup

	pubs chan *pubReq // to the publisher goroutine

	mu         sync.Mutex
	subscribed bool
	closed     bool

	// presence, see presence.go
	presMu  sync.RWMutex // Connect and Disconnect read-lock it, resync locks it
	locMu   sync.Mutex   // guards local, pending and stale
	local   map[string]client
	pending map[string]struct{} // members of local whose Connect failed
	stale   map[string]client   // members whose Disconnect failed
	dirty   chan struct{}       // holds a token when presence must be resynced
	kick    chan struct{}       // wakes the node loop after a failure
}

// keys are the names of the broker's Redis keys.
type keys struct {
	log, epoch              string // the stream of pushes, its epoch
	clients, users, nodes   string // presence
	since                   string // when each client was last connected (ms), which orders late Connects
	nodePrefix, self        string // node:<id> sets
	historyArg, ageArg, ttl string // script arguments
}

// New returns a broker on the Redis server at url,
//
//	redis://[user:password@]host:port[/db][?option=value&...]
//
// (rediss:// for TLS, unix:// for a socket; see [github.com/redis/go-redis/v9.ParseURL] for the
// connection options). The query parameters prefix, history, history_age
// and node_ttl (durations as in time.ParseDuration) set the fields of opts
// that are left zero. New does not contact Redis: errors come with use.
func New(url string, opts Options) (*Broker, error) {
	ropts, err := parseURL(url, &opts)
	if err != nil {
		return nil, err
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.History <= 0 {
		opts.History = DefaultHistory
	}
	if opts.HistoryAge <= 0 {
		opts.HistoryAge = DefaultHistoryAge
	}
	if opts.NodeTTL <= 0 {
		opts.NodeTTL = DefaultNodeTTL
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	// A command is never retried by go-redis: a publish whose reply was
	// lost may have been applied, and retrying it would duplicate it. The
	// broker's loops retry with their own backoff.
	ropts.MaxRetries = -1
	if ropts.DialerRetries == 0 {
		ropts.DialerRetries = 1
	}
	ropts.ContextTimeoutEnabled = true
	ropts.MaintNotificationsConfig = &maintnotifications.Config{Mode: maintnotifications.ModeDisabled}

	var id [8]byte
	rand.Read(id[:])
	p := opts.Prefix
	b := &Broker{
		opts:    opts,
		log:     opts.Logger,
		ropts:   ropts,
		rdb:     goredis.NewClient(ropts),
		node:    hex.EncodeToString(id[:]),
		pubs:    make(chan *pubReq, 1024),
		local:   make(map[string]client),
		pending: make(map[string]struct{}),
		stale:   make(map[string]client),
		dirty:   make(chan struct{}, 1),
		kick:    make(chan struct{}, 1),
	}
	b.keys = keys{
		log: p + ":log", epoch: p + ":epoch",
		clients: p + ":clients", users: p + ":users", nodes: p + ":nodes", since: p + ":since",
		nodePrefix: p + ":node:", self: p + ":node:" + b.node,
		historyArg: strconv.Itoa(opts.History),
		ageArg:     strconv.FormatInt(opts.HistoryAge.Milliseconds(), 10),
		ttl:        strconv.FormatInt(opts.NodeTTL.Milliseconds(), 10),
	}
	b.ctx, b.cancel = context.WithCancel(context.Background())
	// One publisher: what queues while its call is on the way goes in the
	// next call, so batches grow with the load. (A second publisher took
	// whatever single push came along: more, smaller entries; at
	// saturation Redis spent half again as much CPU for a little less
	// throughput.)
	b.wg.Add(1)
	go b.publisher()
	return b, nil
}

// parseURL reads the broker's own query parameters into the zero fields of
// opts and hands the rest of the URL to go-redis.
func parseURL(raw string, opts *Options) (*goredis.Options, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("redis broker: %w", err)
	}
	q := u.Query()
	take := func(name string) string {
		v := q.Get(name)
		q.Del(name)
		return v
	}
	bad := func(name, v string, err error) error {
		return fmt.Errorf("redis broker: URL parameter %s=%q: %w", name, v, err)
	}
	if v := take("prefix"); v != "" && opts.Prefix == "" {
		opts.Prefix = v
	}
	if v := take("history"); v != "" && opts.History == 0 {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			return nil, bad("history", v, errors.Join(err, errors.New("want a positive count")))
		}
		opts.History = n
	}
	for name, d := range map[string]*time.Duration{"history_age": &opts.HistoryAge, "node_ttl": &opts.NodeTTL} {
		if v := take(name); v != "" && *d == 0 {
			t, err := time.ParseDuration(v)
			if err != nil || t <= 0 {
				return nil, bad(name, v, errors.Join(err, errors.New("want a positive duration")))
			}
			*d = t
		}
	}
	u.RawQuery = q.Encode()
	ro, err := goredis.ParseURL(u.String())
	if err != nil {
		return nil, fmt.Errorf("redis broker: %w", err)
	}
	return ro, nil
}

// NodeID returns the random id that names this node in Redis.
func (b *Broker) NodeID() string { return b.node }

// Subscribe starts delivery to h until ctx ends, and the node's liveness
// record with it. It returns the position of the log's end, after every
// push of its last entry (an empty history starts an epoch). Once ctx ends, the node stops refreshing
// its record without removing its clients: the other nodes remove them
// when the record expires, as for a node that died. A Broker serves one
// subscription at a time.
func (b *Broker) Subscribe(ctx context.Context, h sente.Handler) (sente.Position, error) {
	if h.Push == nil {
		return sente.Position{}, errors.New("redis broker: subscribe: Handler.Push is nil")
	}
	b.mu.Lock()
	switch {
	case b.closed:
		b.mu.Unlock()
		return sente.Position{}, ErrClosed
	case b.subscribed:
		b.mu.Unlock()
		return sente.Position{}, errors.New("redis broker: subscribe: this broker is subscribed already")
	}
	b.subscribed = true
	b.mu.Unlock()
	unsubscribe := func() {
		b.mu.Lock()
		b.subscribed = false
		b.mu.Unlock()
	}

	st, err := b.state(ctx, sente.NewEpoch())
	if err == nil {
		err = b.heartbeat(ctx)
	}
	if err != nil {
		unsubscribe()
		return sente.Position{}, fmt.Errorf("redis broker: subscribe: %w", err)
	}
	seq, ok := idSeq(st.last)
	seq |= lastPush // after every push of the last entry
	if !ok {
		unsubscribe()
		return sente.Position{}, fmt.Errorf("redis broker: subscribe: stream id %q out of range", st.last)
	}

	// The subscription ends with ctx or with Close.
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		unsubscribe()
		return sente.Position{}, ErrClosed
	}
	b.wg.Add(3) // under mu, so never after Close's Wait began
	b.mu.Unlock()
	sctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(b.ctx, cancel)
	var running sync.WaitGroup
	running.Add(2)
	go func() {
		defer b.wg.Done()
		defer running.Done()
		b.read(sctx, h, st.epoch, st.last)
	}()
	go func() {
		defer b.wg.Done()
		defer running.Done()
		b.run(sctx, h)
	}()
	go func() {
		defer b.wg.Done()
		running.Wait()
		stop()
		cancel()
		unsubscribe()
	}()
	return sente.Position{Epoch: st.epoch, Seq: seq}, nil
}

// Close stops the broker's goroutines and closes its connections. It does
// not remove the node's clients from presence: the other nodes do when the
// node's liveness record expires.
func (b *Broker) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	b.mu.Unlock()
	b.cancel()
	b.wg.Wait()
	return b.rdb.Close()
}

// alive returns ErrClosed once Close began.
func (b *Broker) alive() error {
	if b.ctx.Err() != nil {
		return ErrClosed
	}
	return nil
}

var _ sente.Broker = (*Broker)(nil)
