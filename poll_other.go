//go:build !linux

package wsasync

import "errors"

// Elsewhere than on Linux a connection's reader waits in the runtime's poller
// for the whole life of the connection (see poll_linux.go): conn.poll is never
// set, so the reader never parks and closeSocket has no poller to leave.

const pollSupported = false

func (c *conn) park() bool { return false }

func (c *conn) unpoll() bool { return false }

// rawReads, rawWrites: elsewhere, reads and writes go through the net.Conn
// (and each batch of writes arms the write deadline).
const rawReads, rawWrites = false, false

func readFD(fd uintptr, p []byte) (int, error) { return 0, errors.ErrUnsupported }

// socketSink is not used here.
type socketSink struct{ c *conn }

func (s *socketSink) init() {}

func (s *socketSink) Write(p []byte) (int, error) { return s.c.nc.Write(p) }
