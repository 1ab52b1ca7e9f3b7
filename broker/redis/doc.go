// Package redis is a [sente.Broker] on Redis (7.0 or later): several
// sente servers share their users, their pushes and a log of recent pushes
// through one Redis server.
//
//	b, err := redis.New("redis://127.0.0.1:6379/0?prefix=chat", redis.Options{})
//	if err != nil {
//		return err
//	}
//	defer b.Close() // after the server's Shutdown
//	srv := sente.NewServer(sente.Options{Broker: b})
//
// One [Broker] value stands for one node: give each sente.Server its own.
// The URL takes go-redis's connection options ([github.com/redis/go-redis/v9.ParseURL]) and the
// broker's own: prefix, history, history_age, node_ttl (see [Options]).
//
// # Keys
//
// Every key starts with Options.Prefix (default "sente"):
//
//	<prefix>:log          stream of pushes, fields e (epoch) and p (the pushes
//	                      one publish call sent, each "<target 1|2|3>
//	                      <flush 0|1><len(to)>:<len(event)>:<to><event>")
//	<prefix>:epoch        string, the epoch of the log's history
//	<prefix>:clients      hash "<len(uid)>:<uid>:<client id>" → owning node id
//	<prefix>:users        hash user id → number of its clients
//	<prefix>:node:<node>  set of the clients a node owns
//	<prefix>:nodes        sorted set node id → expiry of its liveness (ms)
//
// Publishing, presence changes and reaping are Lua scripts, so every change
// is atomic: exactly one node sees a user open or close. Concurrent
// Publish calls of a node share one script call (one round trip) and one
// stream entry. Each subscribed node reads the stream with XREAD BLOCK on a
// connection of its own and hands the pushes to the server in stream
// order. Push k of the entry with stream id "ms-n" is at Seq
// ms<<22 | n<<10 | k: Seq grows with every push but is not contiguous. The
// keys are not declared for Redis Cluster: use a standalone server.
//
// # Resume window
//
// The log keeps about the last Options.History entries (default 10,000;
// Redis trims whole stream nodes, so up to 100 more may stay), an entry
// being one push or the batch of pushes a node published at once, and
// drops those older than Options.HistoryAge (default 2 minutes) when later
// pushes are published. A client that resumes from a position still in the log
// gets every push it missed (Replay); past it, or from another epoch, the
// server reports the pushes lost. The epoch is renewed when Redis lost the
// log (a restart without persistence, a deleted key): subscribed nodes then
// go on with the new history from its start. History also bounds how far a
// node's delivery may fall behind (a stalled node, an outage): beyond it,
// the node misses pushes and logs an error. Size it for the rate of
// entries: one per publish call of each node, so at most (pushes/s) but
// far fewer under load, when concurrent pushes share entries.
//
// # Outage
//
// While Redis is unreachable, Publish, Connect, Disconnect, Users and
// Replay fail with an error (within ctx and go-redis's dial and read
// timeouts; commands are never retried, so a push is never published
// twice). The server then refuses the push (sente.ErrBroker); clients stay
// connected. The node remembers its clients meanwhile; when Redis answers
// again (its loops retry with capped, jittered backoff) it records them
// again, reporting sente.UserOpened for each user that opens then, removes
// the clients whose Disconnect failed (reporting sente.ClientGone with
// UserClosed when that closes the user), and resumes delivery where it
// stopped: no push is skipped or repeated as long as the log still holds
// the node's position (see History above).
//
// # Liveness
//
// A subscribed node refreshes its liveness record every Options.NodeTTL/3
// (default TTL 10 s). When a node's record expires (it stopped, died, or
// was cut off for longer than the TTL), the other nodes remove its clients,
// one reporting each as sente.ClientGone. Ending the Subscribe context or
// Close does not remove the node's clients: they leave after the TTL, which
// lets them reconnect to another node without their users flapping. A node
// that finds its own record expired (it stalled, or was cut off, for longer
// than the TTL) records its clients again, except those another node has
// connected since, reporting sente.UserOpened for the users that open.
package redis
