// Package via connects endpoints over WebSockets as equal peers that call
// each other's handlers by event id, after the Clojure library of the same
// name, on the wsasync core.
//
// An [Endpoint] accepts peers (it is an http.Handler, mountable on any
// route) and connects to peers by URL ([Endpoint.Connect], or
// [Options.Peers] at start). Once connected, both ends are equal: either may
// fire an event ([Endpoint.Dispatch]) or call one and wait for its reply
// ([Endpoint.Invoke]), and both run handlers registered with
// [Endpoint.Handle]. Only exported ids ([Options.Exports]) can be called
// from the other end.
//
//	server := via.New(via.Options{Exports: []string{"chat/"}})
//	server.Handle("chat/echo", func(ctx context.Context, c *via.Call) error {
//		return c.Reply(200, c.Body)
//	})
//	http.Handle("/via", server)
//
//	client := via.New(via.Options{})
//	id, err := client.Connect(ctx, "ws://localhost:8080/via")
//	var answer string
//	err = client.Invoke(ctx, id, "chat/echo", "hello", &answer)
//
// # Peers
//
// Each end keeps a table of its peers, keyed by ids it makes itself (never
// taken from the other end). An originator (a peer this endpoint connected
// to) is reconnected when its connection drops, with capped exponential
// backoff and jitter, and keeps its id, session context and tags;
// [Options.OnReconnect] runs on each new connection before it carries
// anything else. A terminator (a peer that connected to us) is removed when
// its connection ends: when it reconnects it is a new peer, with a new id
// and an empty session context, which the other end's OnReconnect can
// restore with [Peer.SyncSession]. A peer that is disconnected on purpose
// ([Peer.Disconnect], close code 1000) is not reconnected to.
//
// Liveness is the core's: each connection is pinged every
// [Options.HeartbeatInterval], and a peer that sends nothing for that plus
// [Options.HeartbeatTimeout] is dropped and reported as [HeartbeatFailed].
// The heartbeat belongs to the connection, so an old one can never drop a
// new connection.
//
// # Calls
//
// The calls from one peer are handled one at a time, in the order they
// arrived, on that peer's worker goroutine; a slow handler holds back its
// own peer only. Replies to this end's Invokes are read by the connection's
// read loop directly, so a handler may Invoke the peer whose call it is
// handling. A handler that panics or fails answers 500, and the connection
// carries on. [Interceptor]s wrap handlers like HTTP middleware; one can
// answer in the handler's place (403) or disconnect the peer.
//
// # Session context and tags
//
// Each peer has a session context (a map, [Peer.SetSession],
// [Peer.MergeSession]) and tags ([Peer.AddTags]), both local to this end.
// [Peer.SyncSession] offers the session context to the other end, which
// keeps only what its [Options.AcceptSession] allows; with no
// AcceptSession it keeps nothing. Unlike the Clojure via, which exports
// its session events to every peer, a peer cannot write its own session
// context here unless the application says so: the session context is
// where interceptors look for credentials, so a value a peer proposed must
// be verified before it is trusted (a signed token, checked on every call),
// never taken as a fact (a user id, a role).
//
// # Remote values
//
// A [Value] is an observable value: Get, Set, Update, and Watch (a channel
// that delivers the current value, then every change, latest wins). An
// endpoint publishes a [Source] such as a Value under a subscription id
// ([Endpoint.Publish], exported like an event id), and a peer subscribes
// to it with [Subscribe], which returns a [Remote]: a local copy that starts
// from a default and follows the publisher.
//
//	// The publisher.
//	counter := via.NewValue(0)
//	server := via.New(via.Options{Exports: []string{"counter", "counter/"}})
//	server.Publish("counter", via.Shared(counter))
//	server.Handle("counter/incr", func(ctx context.Context, c *via.Call) error {
//		return c.Reply(200, counter.Update(func(n int) int { return n + 1 }))
//	})
//
//	// A subscriber.
//	n, err := via.Subscribe(ctx, client.Peer(id), "counter", nil, -1)
//	for v := range n.Watch(ctx) {
//		fmt.Println("counter is", v)
//	}
//
// The first push is the whole value; later ones are JSON merge patches
// (RFC 7386) when both values are objects, whole values otherwise. Pushes
// carry sequence numbers, and a gap is never applied: the subscriber
// resynchronises. A slow subscriber skips to the latest value: the
// publisher coalesces changes while the connection is backed up, and Watch
// channels are latest-wins, so nothing queues up. A subscription ends when
// its context ends, [Remote.Close] is called or the peer goes away, and the
// publisher is told; it survives reconnects, being sent again after
// OnReconnect has run. Subscriptions go through the interceptors like calls
// ([Call.IsSubscription]).
//
// # Browser client
//
// The endpoint serves a browser client, via.js, a dependency-free ES module
// (with TypeScript declarations, via.d.ts), to a GET of <route>/via.js: mount
// the endpoint on both "/via" and "/via/". The browser is always the
// originator: it reconnects with the same backoff and resubscribes.
//
//	import { Via } from "/via/via.js";
//	const via = new Via("/via");
//	const sum = await via.invoke("math/add", [2, 3]); // rejects with a ViaError: status, "timeout", "closed"
//	const sub = via.subscribe("counter", null, (n) => render(n));
//	sub.unsubscribe();
//
// examples/via is a page where every tab follows a shared board, with a Go
// peer (go run ./examples/via -peer ws://localhost:8091/via) on the same
// board: a starting point to copy.
//
// # Events
//
// Lifecycle and diagnostic [Event]s (connected, disconnected, removed,
// heartbeat failed, unknown event, unhandled reply, session changed, bad
// message, and the outcomes of subscriptions) go to listeners ([Endpoint.Listen]), called synchronously, and
// to a stream ([Endpoint.Events]) with a sliding buffer that never makes the
// endpoint wait: when nobody reads it, the oldest events are dropped.
//
// # Wire
//
// The protocol (subprotocol via.v1, one JSON envelope per text message) is
// described in PROTOCOL.md beside this file, so that other clients can be
// written against it.
package via
