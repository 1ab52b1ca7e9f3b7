package nats

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"math/rand/v2"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/wsasync/wsasync"
	"github.com/wsasync/wsasync/sente"
)

// Options configure a [Broker]. The zero value of each field means its
// default.
type Options struct {
	// Prefix namespaces every stream, bucket and subject, so that several
	// applications (or tests) can share a NATS server. Letters, digits,
	// '-' and '_' only. Default "sente".
	Prefix string
	// History is how many log messages the stream keeps (each message
	// holds one push, or a batch of pushes published together). Default
	// 10,000.
	History int
	// HistoryAge is how long the stream keeps a message. Default 2 minutes.
	HistoryAge time.Duration
	// NodeTTL is how long a node's liveness record lasts without being
	// refreshed (every NodeTTL/3); the clients of a node silent for that
	// long leave presence. Default 10 s.
	NodeTTL time.Duration
	// Logger receives what the broker cannot return: delivery errors,
	// corrupt entries, outages. Default slog.Default().
	Logger *slog.Logger
}

// Broker is a [sente.Broker] on NATS JetStream: one value stands for one
// node (one sente.Server). Close it when done.
type Broker struct {
	opts   Options
	log    *slog.Logger
	nc     *nats.Conn
	js     jetstream.JetStream
	node   string // random id of this node
	stream string // <prefix>_LOG
	subj   string // <prefix>.log

	users jetstream.KeyValue // <prefix>_USERS: user → its clients and their nodes
	alive jetstream.KeyValue // <prefix>_ALIVE: node → liveness, expires after NodeTTL
	nodes jetstream.KeyValue // <prefix>_NODES: node → member record, deleted once reaped

	ctx    context.Context // ends at Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	pub publisher

	hb     liveness
	resync atomic.Bool // local clients must be recorded again
	warned atomic.Bool // a log stream without epoch was logged

	mu         sync.Mutex
	reconn     chan struct{}     // closed and replaced when the connection comes back
	subscribed bool              // a Subscribe runs
	local      map[string]string // client id → uid: the clients this node connected
	gone       map[string]string // client id → uid: disconnects not recorded yet
	locks      [64]sync.Mutex    // per client id (hashed), to order a client's changes
	seed       maphash.Seed
}

var _ sente.Broker = (*Broker)(nil)

var (
	errClosed       = errors.New("nats broker: closed")
	errSubscribed   = errors.New("nats broker: already subscribed (one Subscribe per Broker)")
	validPrefix     = regexp.MustCompile(`^[A-Za-z0-9_-]+$`)
	knownURLOptions = []string{"prefix", "history", "history_age", "node_ttl"}
)

const (
	defaultPrefix  = "sente"
	defaultHistory = 10000
	defaultAge     = 2 * time.Minute
	defaultNodeTTL = 10 * time.Second
	requestTimeout = 5 * time.Second        // of the setup and the background calls
	reconnectMin   = 100 * time.Millisecond // nats.go's reconnect backoff
	reconnectMax   = 2 * time.Second
	loopBackoffMin = 100 * time.Millisecond // the node's loops' backoff
	loopBackoffMax = 5 * time.Second
)

// New connects to the NATS server at url ("nats://host:4222", several
// separated by commas, credentials as usual) and makes sure the log stream
// and the presence buckets exist. Query parameters set the options left
// zero in opts: prefix, history, history_age and node_ttl (durations as
// "2m", "10s"). It fails when the server cannot be reached or has no
// JetStream.
func New(url string, opts Options) (*Broker, error) {
	servers, err := parseURL(url, &opts)
	if err != nil {
		return nil, err
	}
	if opts.Prefix == "" {
		opts.Prefix = defaultPrefix
	}
	if !validPrefix.MatchString(opts.Prefix) {
		return nil, fmt.Errorf("nats broker: prefix %q: use letters, digits, '-' and '_'", opts.Prefix)
	}
	if opts.History <= 0 {
		opts.History = defaultHistory
	}
	if opts.HistoryAge <= 0 {
		opts.HistoryAge = defaultAge
	}
	if opts.NodeTTL <= 0 {
		opts.NodeTTL = defaultNodeTTL
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	b := &Broker{
		pub:    publisher{inflight: make(map[*nats.Msg]*batch)},
		opts:   opts,
		log:    opts.Logger.With("broker", "nats"),
		node:   sente.NewEpoch() + sente.NewEpoch()[:4],
		stream: opts.Prefix + "_LOG",
		subj:   opts.Prefix + ".log",
		reconn: make(chan struct{}),
		local:  make(map[string]string),
		gone:   make(map[string]string),
		seed:   maphash.MakeSeed(),
	}
	b.log = b.log.With("node", b.node)
	b.ctx, b.cancel = context.WithCancel(context.Background())
	b.nc, err = nats.Connect(servers,
		nats.Name("wsasync sente node "+b.node),
		nats.Timeout(requestTimeout),
		nats.MaxReconnects(-1),
		nats.CustomReconnectDelay(func(attempts int) time.Duration {
			return wsasync.Backoff(attempts, reconnectMin, reconnectMax, rand.Float64())
		}),
		// Nothing is buffered while disconnected: calls fail at once
		// rather than being sent late.
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				b.log.Warn("nats broker: disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(*nats.Conn) {
			b.log.Info("nats broker: reconnected")
			b.mu.Lock()
			close(b.reconn)
			b.reconn = make(chan struct{})
			b.mu.Unlock()
		}),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			b.log.Warn("nats broker: async error", "err", err)
		}),
	)
	if err != nil {
		b.cancel()
		return nil, fmt.Errorf("nats broker: connect %s: %w", servers, err)
	}
	b.js, err = jetstream.New(b.nc,
		jetstream.WithPublishAsyncTimeout(2*requestTimeout),
		jetstream.WithPublishAsyncAckHandler(func(_ jetstream.JetStream, m *nats.Msg, _ *jetstream.PubAck) { b.acked(m, nil) }),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) { b.acked(m, err) }),
	)
	if err == nil {
		err = b.setup()
	}
	if err != nil {
		b.cancel()
		b.nc.Close()
		return nil, err
	}
	return b, nil
}

// setup makes the stream and the buckets and records this node.
func (b *Broker) setup() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*requestTimeout)
	defer cancel()
	info, _, err := b.streamInfo(ctx, true)
	if err != nil {
		return err
	}
	if c := info.Config; c.MaxMsgs != int64(b.opts.History) || c.MaxAge != b.opts.HistoryAge {
		b.log.Warn("nats broker: the log stream has other limits than these options: it keeps its own",
			"stream", b.stream, "max_msgs", c.MaxMsgs, "max_age", c.MaxAge)
	}
	if err := b.buckets(ctx, true); err != nil {
		return err
	}
	// The liveness bucket's TTL, set by the node that made it, is the
	// cluster's: heartbeats must follow it.
	st, err := b.alive.Status(ctx)
	if err != nil {
		return fmt.Errorf("nats broker: liveness bucket: %w", err)
	}
	if ttl := st.TTL(); ttl > 0 && ttl != b.opts.NodeTTL {
		b.log.Warn("nats broker: the liveness bucket has another TTL than Options.NodeTTL: using it", "ttl", ttl)
		b.opts.NodeTTL = ttl
	}
	return b.beat(ctx)
}

// buckets makes the presence buckets that are missing; with bind (at New)
// it also sets the broker's handles, which stay good for a bucket made
// again later.
func (b *Broker) buckets(ctx context.Context, bind bool) error {
	p := b.opts.Prefix
	for _, k := range []struct {
		name string
		ttl  time.Duration
		kv   *jetstream.KeyValue
	}{{p + "_USERS", 0, &b.users}, {p + "_ALIVE", b.opts.NodeTTL, &b.alive}, {p + "_NODES", 0, &b.nodes}} {
		kv, err := b.bucket(ctx, k.name, k.ttl)
		if err != nil {
			return err
		}
		if bind {
			*k.kv = kv
		}
	}
	return nil
}

func (b *Broker) bucket(ctx context.Context, name string, ttl time.Duration) (jetstream.KeyValue, error) {
	kv, err := b.js.KeyValue(ctx, name)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		kv, err = b.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      name,
			Description: "wsasync sente presence",
			History:     1,
			TTL:         ttl,
			Storage:     jetstream.FileStorage,
		})
		if errors.Is(err, jetstream.ErrBucketExists) { // made meanwhile by another node
			kv, err = b.js.KeyValue(ctx, name)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("nats broker: bucket %s: %w", name, err)
	}
	return kv, nil
}

// Subscribe starts delivering the log to h, and the node's heartbeat and
// reaper, until ctx ends or Close. It returns the position of the log's
// end. When the server cannot be asked, it returns the error but delivers
// anyway, from the log's end when the server is back.
func (b *Broker) Subscribe(ctx context.Context, h sente.Handler) (sente.Position, error) {
	b.mu.Lock()
	if b.ctx.Err() != nil {
		b.mu.Unlock()
		return sente.Position{}, errClosed
	}
	if b.subscribed {
		b.mu.Unlock()
		return sente.Position{}, errSubscribed
	}
	b.subscribed = true
	b.wg.Add(1)
	b.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(b.ctx, cancel)
	var (
		cur cursor
		pos sente.Position
	)
	ictx, icancel := context.WithTimeout(ctx, requestTimeout)
	info, epoch, err := b.streamInfo(ictx, true)
	icancel()
	if err == nil {
		cur = cursor{epoch: epoch, created: info.Created, seq: info.State.LastSeq}
		pos = sente.Position{Epoch: epoch, Seq: (cur.seq + 1) << idxBits}
	} else {
		err = fmt.Errorf("nats broker: subscribe: %w", err)
	}
	go func() {
		defer b.wg.Done()
		done := make(chan struct{})
		go func() {
			defer close(done)
			b.read(ctx, h, cur)
		}()
		b.run(ctx, h)
		<-done
		stop()
		cancel()
		b.mu.Lock()
		b.subscribed = false
		b.mu.Unlock()
	}()
	return pos, err
}

// Close stops the node's goroutines and closes the connection. It does not
// deregister the node's clients: they leave presence when its liveness
// expires, unless they reconnect elsewhere first.
func (b *Broker) Close() error {
	b.once.Do(func() {
		b.mu.Lock() // no Subscribe starts after this
		b.cancel()
		b.mu.Unlock()
		b.pub.shut() // nor a republish
		b.wg.Wait()
		b.nc.Close()
	})
	return nil
}

// reconnected returns a channel closed when the connection comes back.
func (b *Broker) reconnected() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.reconn
}

// lock returns the mutex of client id.
func (b *Broker) lock(clientID string) *sync.Mutex {
	return &b.locks[maphash.String(b.seed, clientID)%uint64(len(b.locks))]
}

// report calls h.Presence when there is one.
func report(h sente.Handler, p sente.Presence) {
	if h.Presence != nil {
		h.Presence(p)
	}
}

// sleep waits d or until ctx ends, and reports whether ctx is still on.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// backoff is the wait before retry number level of a background loop.
func backoff(level int, maxWait time.Duration) time.Duration {
	return wsasync.Backoff(level, loopBackoffMin, max(maxWait, loopBackoffMin), rand.Float64())
}

// conflict reports an optimistic-concurrency failure of a KV write.
func conflict(err error) bool {
	var api *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) ||
		errors.As(err, &api) && api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence
}

// parseURL takes this package's query parameters out of raw, setting the
// options left zero, and returns what nats.Connect takes.
func parseURL(raw string, o *Options) (string, error) {
	servers, query, ok := strings.Cut(raw, "?")
	if servers == "" {
		servers = nats.DefaultURL
	}
	if !ok {
		return servers, nil
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return "", fmt.Errorf("nats broker: url query: %w", err)
	}
	for k, v := range q {
		val := v[len(v)-1]
		var err error
		switch k {
		case "prefix":
			if o.Prefix == "" {
				o.Prefix = val
			}
		case "history":
			if o.History == 0 {
				o.History, err = strconv.Atoi(val)
			}
		case "history_age":
			if o.HistoryAge == 0 {
				o.HistoryAge, err = time.ParseDuration(val)
			}
		case "node_ttl":
			if o.NodeTTL == 0 {
				o.NodeTTL, err = time.ParseDuration(val)
			}
		default:
			return "", fmt.Errorf("nats broker: unknown url parameter %q (known: %s)", k, strings.Join(knownURLOptions, ", "))
		}
		if err != nil {
			return "", fmt.Errorf("nats broker: url parameter %s: %w", k, err)
		}
	}
	return servers, nil
}
