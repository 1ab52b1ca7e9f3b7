// Package nats is a [sente.Broker] on NATS JetStream: several sente
// servers (nodes) share their users' pushes and presence through one NATS
// server (2.9 or later, with JetStream).
//
//	b, err := nats.New("nats://127.0.0.1:4222?prefix=myapp", nats.Options{})
//	if err != nil {
//		log.Fatal(err)
//	}
//	defer b.Close()
//	s := sente.NewServer(sente.Options{Broker: b})
//	http.Handle("/chsk", s)
//
// One [Broker] value stands for one node: give each sente.Server its own
// (Subscribe runs once at a time per Broker). [New] fails when the server
// cannot be reached or has no JetStream; after that, the broker rides out
// outages on its own. It uses nothing newer than NATS 2.9: streams, pull
// consumers, key-value buckets with a TTL, compare-and-set writes.
//
// # Keys and subjects
//
// Everything is named after Options.Prefix (default "sente"), so that
// applications and tests can share a server:
//
//   - Stream <prefix>_LOG on subject <prefix>.log: the log of pushes. Each
//     message is a batch of the pushes that concurrent Publish calls sent
//     together (one JetStream message and one ack for all of them), in a
//     small binary encoding. Limits: Options.History messages, at most
//     Options.HistoryAge old, oldest discarded first, file storage (the
//     history survives a restart of the NATS server). The stream's
//     description holds the epoch: a stream deleted and made again (by the
//     next Publish or reader) has a new one, so that old positions are
//     reported lost. Push k of the message of stream sequence s is at
//     Position{Epoch, Seq: s<<12 | k}: Seq grows with every push but is not
//     contiguous.
//   - Key-value bucket <prefix>_USERS: one key per user that has a client,
//     "u" + the user id in unpadded base64url, holding the JSON object
//     {client id: node id}. Connect, Disconnect and the reaper change it by
//     compare-and-set on that one key, so each first client and each last
//     one is decided once, cluster-wide. (So a user with very many clients,
//     such as the anonymous group "" of a public site, makes one large,
//     busy key: at most about 20,000 clients, NATS's 1 MB payload.)
//   - Bucket <prefix>_ALIVE: one key per live node (a random id), with a TTL
//     of Options.NodeTTL (the bucket's max age), refreshed every NodeTTL/3.
//   - Bucket <prefix>_NODES: one key per node that has not been reaped.
//
// Each node also makes short-lived consumers on the log stream (its live
// delivery, replays), deleted when done.
//
// # Delivery and resuming
//
// Each node reads the log with its own consumer, in order, and calls
// Handler.Push from one goroutine. Subscribe returns the position of the
// log's end. After an interruption (outage, lost messages, a consumer
// deleted) the node reads again from the last message it delivered, so it
// misses nothing as long as that message is still in the history; when the
// stream was replaced (new epoch) it delivers the new history from its
// start. A history that changed without its epoch showing it gets a new
// epoch from the first node that sees it, so that no position names two
// pushes: a stream made again with the same description (a restored
// configuration), or one whose sequence went back below what the node had
// delivered (a server that lost messages it had acknowledged). Every
// position taken before is then reported lost, and the node's clients are
// told, as after a replacement. Replay reads the stream too: a client can resume from a position as
// long as the message holding it is within the last History messages and
// HistoryAge (the resume window); otherwise Replay reports lost.
//
// # Presence and liveness
//
// A node whose liveness key expires (NodeTTL, default 10 s, after its last
// refresh: it crashed, was stopped, or lost the server) is dead: every live
// node looks for dead nodes every NodeTTL/3, and removes their clients from
// presence, each client by exactly one node, which reports it to its
// Handler.Presence as ClientGone (UserClosed when it was the user's last
// client). Stopping a node (its Subscribe context, or Close) does not
// disconnect its clients: they leave presence after NodeTTL unless they
// reconnect elsewhere first, which moves them without a close and an open.
//
// # Outages
//
// While the NATS server is unreachable, Publish, Connect, Disconnect, Users
// and Replay fail at once with an error (nothing is queued to be sent
// later); users of this node get no pushes from other nodes, and pushes
// from this node fail. The connection is retried with capped, jittered
// backoff. The node remembers which clients it connected and disconnected
// even when the calls failed: when the server is back, it records them
// again (and its liveness), reporting UserOpened for a user that had no
// client left (because the outage outlasted NodeTTL and another node
// removed it, or because its Connect failed), and ClientGone for a client
// whose Disconnect failed (UserClosed when it was its user's last); and it
// resumes delivery from the last push it delivered. An outage longer than NodeTTL makes the other
// nodes report this node's clients gone, and this node reports them opened
// again when it is back.
//
// Corrupt or foreign messages on the log subject, and foreign or corrupt
// entries in the buckets, are logged (Options.Logger) and skipped.
package nats
