package sente

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/wsasync/wsasync"
	"github.com/wsasync/wsasync/pipe"
)

// Options configure a [Server]. The zero value means the defaults.
type Options struct {
	// UserID names the user of a connection from its handshake request and
	// client id; it is fixed for the connection. Nil, or "", means the
	// anonymous group, whose id is "".
	UserID func(r *http.Request, clientID string) string
	// HandshakeData, when set, makes the data sent to a client in its
	// handshake.
	HandshakeData func(r *http.Request) any

	// Reject, when set, runs first on every request; a non-nil error
	// refuses it with the error's status if it is a *wsasync.RefusedError
	// (wsasync.Refuse), 403 otherwise.
	Reject func(r *http.Request) error
	// CSRFToken, when set, returns the request's reference CSRF token (from
	// its session); the client must present the same token (see
	// PROTOCOL.md), compared in constant time. An empty reference token
	// refuses the request. Nil skips the check: the origin check then is
	// the defence against cross-site requests.
	CSRFToken func(r *http.Request) string
	// Origins lists other hosts whose pages may connect (patterns as in
	// path.Match, such as "*.example.com"); the request's own host always
	// may. See wsasync.Upgrader.Origins.
	Origins []string
	// Authorize, when set, runs last; a non-nil error refuses the request
	// with 401 (or the status of a *wsasync.RefusedError).
	Authorize func(r *http.Request) error

	// Packer packs frames. Nil means JSON.
	Packer Packer
	// Broker carries pushes and presence between nodes. Nil means a
	// MemoryBroker of this server's own.
	Broker Broker

	// Resume is how many of the latest pushes this node keeps in memory so
	// that a client that reconnects, here or after another node's
	// connection dropped, gets what it missed (see PROTOCOL.md, resuming).
	// Older gaps are asked of the broker, whose history is bounded too;
	// but when a node dies, its clients all come back to the others
	// within seconds, and thousands of broker reads at once are slow
	// (past 4 s a client is told lost rather than kept waiting). Zero
	// means [DefaultResume]: about 20 s of pushes at 1,500/s, for about
	// 100 bytes each plus the events it keeps (3 MB and 3 MB more with
	// 100-byte events), taken as pushes come; negative keeps none.
	Resume int

	// SendWindow is how long a push waits for others to join its batch.
	// Zero means 30 ms; negative sends each push at once.
	SendWindow time.Duration
	// CloseGrace is how long a client may be gone before it counts as
	// disconnected, so that a reload or a quick reconnect is not a
	// disconnect. Zero means 2.5 s.
	CloseGrace time.Duration
	// AjaxSendWindow is SendWindow for Ajax clients, whose every batch
	// costs a request. Zero means 100 ms.
	AjaxSendWindow time.Duration
	// AjaxCloseGrace is CloseGrace for Ajax clients, which are gone
	// between two polls. Zero means 5 s.
	AjaxCloseGrace time.Duration
	// PollTimeout is how long an Ajax long-poll is held before it is
	// answered with "chsk/timeout", and how long a POST waits for its
	// reply. Keep it under the idle timeout of proxies. Zero means 20 s.
	PollTimeout time.Duration
	// SendQueue bounds what may wait for one client (events and replies).
	// A client that falls that far behind is disconnected with 1008, and
	// the others are unaffected. Zero means 1024.
	SendQueue int
	// RecvBuffer is the capacity of the Events channel. When it is full,
	// connections stop reading until there is room. Zero means 1024.
	RecvBuffer int
	// WebSocket holds the core's settings: read limit (the largest
	// message; 1 MiB by default), ping interval and timeout, write
	// timeout.
	WebSocket wsasync.Options
	// Logger receives refusals, bad packages and dropped clients. Nil
	// means slog.Default().
	Logger *slog.Logger
}

// DefaultResume is Options.Resume's default: how many of the latest pushes
// a node keeps for clients that resume.
const DefaultResume = 32768

// Close codes the server uses (see PROTOCOL.md).
const (
	// CodeKicked: the application removed the client; it must not
	// reconnect.
	CodeKicked wsasync.StatusCode = 4000
	// CodeReplaced: a newer connection with the same client id took
	// over; the old one must not reconnect.
	CodeReplaced wsasync.StatusCode = 4002
	// CodeTooSlow: the client's send queue overflowed (1008, policy
	// violation); it may reconnect.
	CodeTooSlow = wsasync.StatusPolicyViolation
	// CodeRestart: the server is shutting down (1012, service restart);
	// the client should reconnect.
	CodeRestart = wsasync.StatusServiceRestart
)

// Server is a Sente channel-socket server: mount it on one path (Sente's
// /chsk). Make it with [NewServer]; stop it with [Server.Shutdown].
type Server struct {
	opts   Options
	w      wire
	log    *slog.Logger
	up     wsasync.Upgrader
	broker Broker
	events chan *Event
	ctx    context.Context
	cancel context.CancelFunc
	window time.Duration
	grace  time.Duration

	ajaxWindow  time.Duration
	ajaxGrace   time.Duration
	pollTimeout time.Duration

	mu       sync.Mutex
	hist     recent                        // the latest pushes, for resuming clients
	clients  map[string]*client            // by client id
	users    map[string]map[string]*client // uid → client id → client
	leaving  map[string]chan struct{}      // client id → closed once its departure reached the broker
	closing  bool
	conns    sync.WaitGroup // connection handlers
	timers   sync.WaitGroup // grace timers that may still fire
	shutOnce sync.Once
}

// client is one client id: its queue outlives each of its connections for the
// grace period.
type client struct {
	id, uid string
	box     *outbox
	current *link       // the live connection, nil while gone
	gen     uint64      // bumped on each attach; a grace timer acts only on its own
	grace   *time.Timer // running while gone
	// kicked is a close made while no connection was live (an Ajax client
	// between two polls); the next one is closed with it.
	kicked *wsasync.Message
}

// link is one connection of a client, on any transport.
type link struct {
	c    *client
	gen  uint64
	at   Position // the client's position once attached, for its handshake
	lost bool     // pushes the client missed could not be found
	req  *http.Request
	ajax bool                 // a long-poll rather than a WebSocket
	wake chan struct{}        // the outbox has something
	kick chan wsasync.Message // a Closed to send, then stop (cap 1)
}

// NewServer returns a server with opts. It starts no goroutine until
// connections arrive, other than the broker subscription.
func NewServer(opts Options) *Server {
	s := &Server{opts: opts, w: newWire(opts.Packer), log: opts.Logger}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.window = opts.SendWindow
	if s.window == 0 {
		s.window = 30 * time.Millisecond
	}
	if s.window < 0 {
		s.window = 0
	}
	s.grace = opts.CloseGrace
	if s.grace <= 0 {
		s.grace = 2500 * time.Millisecond
	}
	s.ajaxWindow = orDefault(opts.AjaxSendWindow, 100*time.Millisecond)
	s.ajaxGrace = orDefault(opts.AjaxCloseGrace, 5*time.Second)
	s.pollTimeout = orDefault(opts.PollTimeout, 20*time.Second)
	if s.opts.SendQueue <= 0 {
		s.opts.SendQueue = 1024
	}
	if s.opts.RecvBuffer <= 0 {
		s.opts.RecvBuffer = 1024
	}
	s.broker = opts.Broker
	if s.broker == nil {
		s.broker = &MemoryBroker{}
	}
	s.up = wsasync.Upgrader{
		Options:      opts.WebSocket,
		Origins:      []string{"*"}, // checked by the server for every transport
		Subprotocols: []string{subprotocol(s.w.p)},
	}
	if s.up.Logger == nil {
		s.up.Logger = s.log
	}
	s.events = make(chan *Event, s.opts.RecvBuffer)
	s.clients = make(map[string]*client)
	s.users = make(map[string]map[string]*client)
	s.ctx, s.cancel = context.WithCancel(context.Background())
	size := opts.Resume
	if size == 0 {
		size = DefaultResume
	}
	start, err := s.broker.Subscribe(s.ctx, Handler{Push: s.deliver, Presence: s.presence})
	if err != nil {
		s.log.Error("sente: broker subscription failed", "err", err)
	}
	s.hist.reset(start, max(size, 0))
	return s
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

func subprotocol(p Packer) string { return "sente.v1." + p.Name() }

// Events returns the channel of received events (Sente's ch-recv): client
// events and the server's own (user open and close, client connect and
// disconnect, bad packages and events). It is closed by Shutdown.
func (s *Server) Events() <-chan *Event { return s.events }

var clientIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ServeHTTP serves the channel-socket path, and the browser client at
// <path>/client.js (mount the server on both "/chsk" and "/chsk/" for that).
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if serveScript(w, r) {
		return
	}
	clientID := r.URL.Query().Get("client-id")
	if !clientIDPattern.MatchString(clientID) {
		s.refuse(w, r, http.StatusBadRequest, errors.New("missing or malformed client-id"))
		return
	}
	if status, err := s.check(r); err != nil {
		s.refuse(w, r, status, err)
		return
	}
	s.mu.Lock()
	closing := s.closing
	if !closing {
		s.conns.Add(1)
	}
	s.mu.Unlock()
	if closing {
		s.refuse(w, r, http.StatusServiceUnavailable, errors.New("shutting down"))
		return
	}
	defer s.conns.Done()
	uid := ""
	if s.opts.UserID != nil {
		uid = s.opts.UserID(r, clientID)
	}
	if isWebSocket(r) {
		if _, ok := s.w.p.(JSON); !ok && !offers(r, subprotocol(s.w.p)) {
			// Only JSON is spoken to a client that names no packer.
			s.refuse(w, r, http.StatusBadRequest, fmt.Errorf("client does not offer subprotocol %s", subprotocol(s.w.p)))
			return
		}
		s.serveWebSocket(w, r, clientID, uid)
		return
	}
	s.serveAjax(w, r, clientID, uid)
}

// offers reports whether the handshake offers subprotocol p.
func offers(r *http.Request, p string) bool {
	return slices.Contains(wsasync.OfferedSubprotocols(r), p)
}

func isWebSocket(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

func (s *Server) refuse(w http.ResponseWriter, r *http.Request, status int, err error) {
	s.log.Warn("sente: request refused", "remote", r.RemoteAddr, "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	http.Error(w, http.StatusText(status), status)
}

// check runs the security checks of every request, in Sente's order.
func (s *Server) check(r *http.Request) (int, error) {
	if s.opts.Reject != nil {
		if err := s.opts.Reject(r); err != nil {
			return refusal(err, http.StatusForbidden), err
		}
	}
	if s.opts.CSRFToken != nil {
		want := s.opts.CSRFToken(r)
		got := csrfToken(r)
		if want == "" || got == "" || subtle.ConstantTimeCompare([]byte(want), []byte(got)) != 1 {
			return http.StatusForbidden, errors.New("bad CSRF token")
		}
	}
	u := wsasync.Upgrader{Origins: s.opts.Origins}
	if !u.CheckOrigin(r) {
		return http.StatusForbidden, fmt.Errorf("origin %q not allowed", r.Header.Get("Origin"))
	}
	if s.opts.Authorize != nil {
		if err := s.opts.Authorize(r); err != nil {
			return refusal(err, http.StatusUnauthorized), err
		}
	}
	return 0, nil
}

func refusal(err error, status int) int {
	var re *wsasync.RefusedError
	if errors.As(err, &re) && re.Status >= 400 && re.Status <= 599 {
		return re.Status
	}
	return status
}

// csrfToken finds the client's token: a header, or for browsers' WebSocket
// handshakes an offered subprotocol "csrf.<token>". Never the URL.
func csrfToken(r *http.Request) string {
	if t := r.Header.Get("X-CSRF-Token"); t != "" {
		return t
	}
	if t := r.Header.Get("X-XSRF-Token"); t != "" {
		return t
	}
	for _, p := range wsasync.OfferedSubprotocols(r) {
		if t, ok := strings.CutPrefix(p, "csrf."); ok {
			return t
		}
	}
	return ""
}

// attach makes l the live connection of its client id, replacing an older
// one, and reports the client's arrival. A client that gives a position
// (resume) first gets the pushes it missed since.
func (s *Server) attach(clientID, uid string, req *http.Request, ajax bool) *link {
	from, resuming := resumeFrom(req)
	l := &link{req: req, ajax: ajax, wake: make(chan struct{}, 1), kick: make(chan wsasync.Message, 1)}
	var (
		gone     *client // an entry of the same client id under another user
		replaced *link
		fresh    bool
		back     bool // the client returns within its grace period
	)
	s.mu.Lock()
	if s.closing {
		// Let in just before Shutdown began, attached after it took its
		// snapshot: close it like the others, without registering it.
		s.mu.Unlock()
		l.c = &client{id: clientID, uid: uid, box: &outbox{limit: s.opts.SendQueue, closed: true}}
		l.c.current = l
		l.kick <- wsasync.Closed(CodeRestart, "server shutting down")
		return l
	}
	c := s.clients[clientID]
	if c != nil && c.uid != uid {
		// The same browser under another user (a login): the old
		// entry ends now.
		gone = c
		s.removeLocked(c)
		replaced = c.current
		c = nil
	}
	var leaving chan struct{} // the departure of an earlier client of this id
	if c == nil {
		leaving = s.leaving[clientID]
		c = &client{id: clientID, uid: uid, box: &outbox{limit: s.opts.SendQueue}}
		s.clients[clientID] = c
		if s.users[uid] == nil {
			s.users[uid] = make(map[string]*client)
		}
		s.users[uid][clientID] = c
		fresh = true
	}
	if c.grace != nil && c.grace.Stop() {
		s.timers.Done()
	}
	c.grace = nil
	if c.current != nil {
		replaced = c.current
	} else {
		back = !fresh
	}
	c.gen++
	l.c, l.gen = c, c.gen
	c.current = l
	if c.kicked != nil {
		l.kick <- *c.kicked
		c.kicked = nil
	}
	last, start := s.hist.last, s.hist.start
	if fresh {
		// Not shared yet: deliver finds c only after this section.
		c.box.floor, c.box.sent = last, last
	}
	upto := c.box.sentPos()
	if upto.Epoch != last.Epoch {
		upto = last // the log started another history meanwhile
	}
	var (
		held   []outItem
		inRing bool
	)
	switch {
	case resuming && from.Epoch == last.Epoch:
		inRing = s.hist.holds(from)
		held = s.hist.between(nil, from, upto, uid, clientID)
	case resuming:
		held = s.hist.between(nil, start, last, uid, clientID) // what is held of another history
	}
	l.at = last
	s.mu.Unlock()

	if resuming {
		l.at, l.lost = s.resume(c, from, upto, last, start, held, inRing)
		if l.lost {
			s.log.Warn("sente: client resumed past the history", "uid", uid, "client", clientID, "from", from.String(), "at", l.at.String())
		}
	}
	c.box.setWake(l.wake)
	switch {
	case replaced == nil:
	case replaced.ajax:
		// A poll superseded by the client's next request ends quietly.
		replaced.close(wsasync.Message{})
	default:
		replaced.close(wsasync.Closed(CodeReplaced, "replaced by a newer connection"))
	}
	if gone != nil {
		s.departed(gone)
	}
	if fresh {
		if leaving != nil {
			select {
			case <-leaving:
			case <-s.ctx.Done():
			}
		}
		s.arrived(c, req)
	} else if back {
		s.returned(c)
	}
	return l
}

// detach ends l; unless the client comes back within the grace period, it
// then counts as disconnected.
func (s *Server) detach(l *link) {
	c := l.c
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.current != l {
		return // replaced, or removed
	}
	c.current = nil
	if s.closing || s.clients[c.id] != c {
		return // Shutdown removes every client; a removed one has departed
	}
	gen := c.gen
	grace := s.grace
	if l.ajax {
		grace = s.ajaxGrace
	}
	s.timers.Add(1)
	c.grace = time.AfterFunc(grace, func() {
		defer s.timers.Done()
		s.expire(c, gen)
	})
}

// expire removes a client that stayed gone for the grace period.
func (s *Server) expire(c *client, gen uint64) {
	s.mu.Lock()
	if c.gen != gen || c.current != nil || s.clients[c.id] != c {
		s.mu.Unlock()
		return
	}
	c.grace = nil
	s.removeLocked(c)
	done := s.leaveLocked(c.id)
	s.mu.Unlock()
	s.departed(c)
	s.left(c.id, done)
}

// leaveLocked records that client id is departing: a new connection of the
// same id waits for its broker Disconnect before its own Connect, which
// the Disconnect would otherwise undo if it came second.
func (s *Server) leaveLocked(id string) chan struct{} {
	if s.leaving == nil {
		s.leaving = make(map[string]chan struct{})
	}
	done := make(chan struct{})
	s.leaving[id] = done
	return done
}

// left ends a departure that leaveLocked recorded.
func (s *Server) left(id string, done chan struct{}) {
	s.mu.Lock()
	if s.leaving[id] == done {
		delete(s.leaving, id)
	}
	s.mu.Unlock()
	close(done)
}

func (s *Server) removeLocked(c *client) {
	if c.grace != nil && c.grace.Stop() {
		s.timers.Done()
	}
	c.grace = nil
	delete(s.clients, c.id)
	if set := s.users[c.uid]; set != nil {
		delete(set, c.id)
		if len(set) == 0 {
			delete(s.users, c.uid)
		}
	}
	c.box.close()
}

func (s *Server) arrived(c *client, req *http.Request) {
	s.emit(&Event{ID: EventClientConnect, UserID: c.uid, ClientID: c.id, Request: req})
	opened, err := s.broker.Connect(s.ctx, c.uid, c.id)
	if err != nil {
		s.log.Error("sente: broker connect", "uid", c.uid, "client", c.id, "err", err)
	}
	if opened {
		s.emit(&Event{ID: EventUserOpen, UserID: c.uid})
	}
}

// returned records again a client that came back within its grace period:
// meanwhile another node may have taken it (the client went there, then
// came back), and that node's Disconnect must not remove the client this
// node holds now.
func (s *Server) returned(c *client) {
	opened, err := s.broker.Connect(s.ctx, c.uid, c.id)
	if err != nil {
		s.log.Error("sente: broker connect", "uid", c.uid, "client", c.id, "err", err)
	}
	if opened {
		s.emit(&Event{ID: EventUserOpen, UserID: c.uid})
	}
}

func (s *Server) departed(c *client) {
	s.emit(&Event{ID: EventClientGone, UserID: c.uid, ClientID: c.id})
	closed, err := s.broker.Disconnect(context.WithoutCancel(s.ctx), c.uid, c.id)
	if err != nil {
		s.log.Error("sente: broker disconnect", "uid", c.uid, "client", c.id, "err", err)
	}
	if closed {
		s.emit(&Event{ID: EventUserClose, UserID: c.uid})
	}
}

// emit hands an event to the application, waiting for room, until Shutdown.
func (s *Server) emit(ev *Event) {
	ev.packer = s.w.p
	_ = pipe.Send(s.ctx, s.events, ev) // fails only once Shutdown began
}

// close asks the connection to close with the Closed message m.
func (l *link) close(m wsasync.Message) {
	select {
	case l.kick <- m:
	default: // a close is on its way already
	}
}

// Push sends the event [id, data] to every connection of user uid, on every
// node, batched with the pushes of the next SendWindow. data may be any
// value the packer packs, or Raw. Pushes to one connection keep their order.
func (s *Server) Push(uid, id string, data any) error {
	return s.publish(ToUser, uid, id, data, false)
}

// PushNow is Push without waiting for the batching window; what waits for
// the same connections leaves with it, in order.
func (s *Server) PushNow(uid, id string, data any) error {
	return s.publish(ToUser, uid, id, data, true)
}

// PushClient sends the event to the connection of one client id.
func (s *Server) PushClient(clientID, id string, data any) error {
	return s.publish(ToClient, clientID, id, data, false)
}

// Broadcast sends the event to every connection.
func (s *Server) Broadcast(id string, data any) error {
	return s.publish(ToAll, "", id, data, false)
}

func (s *Server) publish(t Target, to, id string, data any, flush bool) error {
	if err := checkAppEventID(id); err != nil {
		return err
	}
	ev, err := s.w.event(id, data)
	if err != nil {
		return err
	}
	p := Push{Target: t, To: to, Event: ev, Flush: flush}
	if err := s.broker.Publish(s.ctx, p); err != nil {
		// Not delivered here either, out of the log: it would overtake
		// the pushes the broker took but has not delivered yet, and
		// arrive twice if the broker stored it after all.
		return fmt.Errorf("%w: %w", ErrBroker, err)
	}
	return nil
}

// ErrBroker reports a push the broker did not acknowledge (it is away).
// The push reaches no connection, unless the broker stored it after all
// (its acknowledgement lost with the connection): then it comes from the
// log like any other, in order and once.
var ErrBroker = errors.New("sente: broker unavailable, push not taken")

// presence reports the changes the broker decided itself.
func (s *Server) presence(p Presence) {
	switch p.Kind {
	case ClientGone:
		s.emit(&Event{ID: EventClientGone, UserID: p.UserID, ClientID: p.ClientID})
		if p.UserClosed {
			s.emit(&Event{ID: EventUserClose, UserID: p.UserID})
		}
	case UserOpened:
		s.emit(&Event{ID: EventUserOpen, UserID: p.UserID})
	}
}

// deliver queues a push for the local clients it addresses, and keeps it for
// clients that resume. It queues under mu, so that whoever reads the node's
// last position under mu knows every push up to it is queued.
func (s *Server) deliver(p Push) {
	var slow []*client
	put := func(c *client) {
		if !c.box.put(outItem{data: p.Event, pos: p.Pos}, p.Flush) {
			slow = append(slow, c)
		}
	}
	s.mu.Lock()
	if p.Gap {
		s.gapLocked(p.Pos)
	}
	s.hist.add(p)
	switch p.Target {
	case ToUser:
		for _, c := range s.users[p.To] {
			put(c)
		}
	case ToClient:
		if c := s.clients[p.To]; c != nil {
			put(c)
		}
	case ToAll:
		for _, c := range s.clients {
			put(c)
		}
	}
	s.mu.Unlock()
	for _, c := range slow {
		s.tooSlow(c)
	}
}

// gapLocked handles pushes this node missed before pos: none of its clients
// may go on as if it had them. Their outboxes count everything up to pos as
// handed over, and the node's log starts at pos, so a resume asks the broker,
// which no longer has them: the client is told. Live connections close with
// CodeRestart to resume now.
func (s *Server) gapLocked(pos Position) {
	s.log.Error("sente: this node missed pushes (it fell behind the broker's history); its clients resume and are told", "before", pos.String())
	before := Position{Epoch: pos.Epoch, Seq: pos.Seq - 1}
	s.hist.reset(before, s.hist.max)
	for _, c := range s.clients {
		c.box.markSent(before)
		if c.current != nil {
			c.current.close(wsasync.Closed(CodeRestart, "missed pushes: resume"))
		}
	}
}

// last returns the position of the node's last push: every push up to it
// is queued for the clients it addresses.
func (s *Server) last() Position {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hist.last
}

// tooSlow disconnects a client whose queue overflowed; others go on.
func (s *Server) tooSlow(c *client) {
	s.mu.Lock()
	l := c.current
	removed := s.clients[c.id] == c && !s.closing
	var done chan struct{}
	if removed {
		s.removeLocked(c)
		done = s.leaveLocked(c.id)
		s.timers.Add(1) // the departure below, which Shutdown waits for
	}
	s.mu.Unlock()
	if !removed {
		return
	}
	s.log.Warn("sente: client too slow, disconnected", "uid", c.uid, "client", c.id, "queue", s.opts.SendQueue)
	if l != nil {
		l.close(wsasync.Closed(CodeTooSlow, "send queue overflow"))
	}
	// Not in the pusher's goroutine: departed waits for room in Events,
	// which the application's loop, perhaps the caller, makes.
	go func() {
		defer s.timers.Done()
		s.departed(c)
		s.left(c.id, done)
	}()
}

// Kick closes every connection of user uid with CodeKicked, which tells
// clients not to reconnect.
func (s *Server) Kick(uid, reason string) {
	m := wsasync.Closed(CodeKicked, reason)
	s.mu.Lock()
	var links []*link
	for _, c := range s.users[uid] {
		if c.current != nil {
			links = append(links, c.current)
		} else {
			c.kicked = &m
		}
	}
	s.mu.Unlock()
	for _, l := range links {
		l.close(m)
	}
}

// KickClient closes the connection of one client id with CodeKicked.
func (s *Server) KickClient(clientID, reason string) {
	m := wsasync.Closed(CodeKicked, reason)
	s.mu.Lock()
	var l *link
	if c := s.clients[clientID]; c != nil {
		l = c.current
		if l == nil {
			c.kicked = &m
		}
	}
	s.mu.Unlock()
	if l != nil {
		l.close(m)
	}
}

// ConnectedUsers returns the ids of the users connected on any node.
func (s *Server) ConnectedUsers(ctx context.Context) ([]string, error) {
	return s.broker.Users(ctx)
}

// Clients returns the client ids of user uid connected to this node,
// including those within their grace period.
func (s *Server) Clients(uid string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, 0, len(s.users[uid]))
	for id := range s.users[uid] {
		ids = append(ids, id)
	}
	return ids
}

// Shutdown refuses new connections, closes every connection with
// CodeRestart (clients reconnect, to this server once it is back or to
// another node), forgets every client, and closes Events once every
// connection has ended. It returns early with ctx's error if ctx ends first.
//
// It reports no departures: the node leaves the broker as a stopped node
// does. With a shared broker its clients stay present while they reconnect
// to other nodes (no user closes and reopens); those that do not come back
// leave when the node's liveness expires, reported once by another node.
// The MemoryBroker forgets them at once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.closing = true
	var links []*link
	var clients []*client
	for _, c := range s.clients {
		if c.current != nil {
			links = append(links, c.current)
		}
		clients = append(clients, c)
	}
	for _, c := range clients {
		s.removeLocked(c)
	}
	s.mu.Unlock()
	for _, l := range links {
		l.close(wsasync.Closed(CodeRestart, "server shutting down"))
	}
	s.cancel() // no more events are handed over from here on

	done := make(chan struct{})
	go func() {
		s.conns.Wait()
		s.timers.Wait()
		close(done)
	}()
	select {
	case <-done:
		s.shutOnce.Do(func() { close(s.events) })
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
