// Package sente gives realtime web apps Sente's channel sockets on top of the
// wsasync core: events [id, data] in both directions, replies with timeouts,
// pushes to every connection of a user, to one client or to everyone, batched
// in a short window, connected-user tracking with a grace period, and the
// handshake-time security checks (reject hook, CSRF token, origin,
// authorization).
//
// A [Server] is an http.Handler for the channel-socket path; received events
// come out of [Server.Events], and a [Router] runs handlers by event id. A
// [Client] is the Go end: it connects, reconnects with backoff, sends events
// and requests with replies.
//
// The wire format is documented in PROTOCOL.md beside this file, so that
// other clients can be written against it.
package sente
