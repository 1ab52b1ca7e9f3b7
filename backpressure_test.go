package wsasync_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gorilla/websocket"
	"github.com/wsasync/wsasync"
)

// bpFrame returns a whole client frame: masked, with the all-zero mask so
// that the payload can be rewritten in place without re-masking.
func bpFrame(op ws.OpCode, payload []byte) (frame []byte, hdrLen int) {
	var b bytes.Buffer
	ws.WriteHeader(&b, ws.Header{Fin: true, OpCode: op, Masked: true, Length: int64(len(payload))})
	hdrLen = b.Len()
	b.Write(payload)
	return b.Bytes(), hdrLen
}

// TestBackpressureHandlerNotReading: a handler that reads nothing from in
// makes a peer writing 256 MiB block once the socket buffers are full, with
// the server's heap bounded; once the handler reads again the peer's writes
// flow again (up to 64 MiB, far beyond the socket buffers) and arrive whole
// and in order.
func TestBackpressureHandlerNotReading(t *testing.T) {
	const (
		msgSize = 64 << 10
		total   = 4096 // 256 MiB
		resumed = 1024 // messages in all once the handler reads
		// stallAfter with no byte accepted by the socket is a plateau.
		stallAfter = 300 * time.Millisecond
	)
	release := make(chan struct{})
	type handlerResult struct {
		n    int
		fail string
	}
	handlerDone := make(chan handlerResult, 1)
	u := wsasync.Upgrader{Options: wsasync.Options{ReadLimit: msgSize}}
	srv := lcServe(t, u.GoWebsocket(func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
		defer close(out)
		if _, _, timedOut := lcRecvErr(release, 6*lcWait); timedOut {
			handlerDone <- handlerResult{fail: "never released"}
			return
		}
		var r handlerResult
		for m := range in {
			if r.fail == "" && (m.Type != wsasync.BinaryMessage || len(m.Data) != msgSize || binary.BigEndian.Uint64(m.Data) != uint64(r.n)) {
				r.fail = fmt.Sprintf("message %d: %v, %d bytes, seq %d", r.n, m.Type, len(m.Data), binary.BigEndian.Uint64(m.Data))
			}
			r.n++
		}
		if s := lcEnd(errs, wsasync.StatusNormalClosure, true, "", nil); s != "" && r.fail == "" {
			r.fail = s
		}
		handlerDone <- r
	}))
	resume := make(chan struct{})
	// Lets the handler and the peer go on; deferred so that a failure
	// leaves no goroutine waiting.
	letGo := sync.OnceFunc(func() { close(resume); close(release) })
	defer letGo()

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	nc := lcRawDial(t, srv.WS)
	payload := make([]byte, msgSize)
	frame, hdrLen := bpFrame(ws.OpBinary, payload)

	stalled := make(chan int64, 1) // bytes written when the writes stalled
	type writerResult struct {
		written int64
		msgs    int
		err     error
	}
	writerDone := make(chan writerResult, 1)
	go func() {
		var written int64
		var msgs int
		var err error
		defer func() { writerDone <- writerResult{written, msgs, err} }()
		stall := stallAfter
		for i := range total {
			if stall != stallAfter && i >= resumed {
				break
			}
			binary.BigEndian.PutUint64(frame[hdrLen:], uint64(i))
			for p := frame; len(p) > 0; {
				nc.SetWriteDeadline(time.Now().Add(stall))
				n, werr := nc.Write(p)
				p, written = p[n:], written+int64(n)
				switch {
				case werr == nil:
				case !errors.Is(werr, os.ErrDeadlineExceeded):
					err = werr
					return
				case n > 0:
					// Slow, not stalled.
				case stall == stallAfter:
					stalled <- written
					if _, _, timedOut := lcRecvErr(resume, 6*lcWait); timedOut {
						err = errors.New("never resumed")
						return
					}
					stall = 2 * lcWait
				default:
					err = fmt.Errorf("stalled again after the handler read: %w", werr)
					return
				}
			}
			msgs++
		}
		closeFrame, _ := bpFrame(ws.OpClose, ws.NewCloseFrameBody(ws.StatusNormalClosure, ""))
		nc.SetWriteDeadline(time.Now().Add(lcWait))
		_, err = nc.Write(closeFrame)
	}()

	var at int64
	select {
	case at = <-stalled:
	case r := <-writerDone:
		t.Fatalf("the peer wrote %d MiB into a handler that reads nothing without blocking (err %v)", r.written>>20, r.err)
	case <-time.After(6 * lcWait):
		t.Fatal("the writer neither stalled nor finished")
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	growth := int64(after.HeapInuse) - int64(before.HeapInuse)
	t.Logf("writes stalled after %.1f MiB; heap in use grew by %.1f MiB", float64(at)/(1<<20), float64(growth)/(1<<20))
	if at > 64<<20 {
		t.Errorf("writes stalled only after %d MiB: the server read far more than its buffers", at>>20)
	}
	if growth > 32<<20 {
		t.Errorf("heap in use grew by %d MiB while the handler read nothing", growth>>20)
	}

	// Release: the handler reads again and the peer finishes its 256 MiB.
	letGo()
	w, _ := lcRecv(t, writerDone, 6*lcWait, "writer")
	if w.err != nil {
		t.Errorf("writer after release: %v (%d MiB written)", w.err, w.written>>20)
	}
	r, _ := lcRecv(t, handlerDone, 2*lcWait, "handler")
	if r.fail != "" {
		t.Error("handler:", r.fail)
	}
	if w.err == nil && r.n != w.msgs {
		t.Errorf("handler got %d messages, the peer wrote %d", r.n, w.msgs)
	}
	nc.Close()
	srv.waitServed(t, 1, lcWait)
}

// TestBackpressurePeerNotReading: sends on out block once a peer that reads
// nothing has let the buffers fill, and after WriteTimeout the connection is
// dropped with ErrWriteTimeout; later sends are discarded until the handler
// returns.
func TestBackpressurePeerNotReading(t *testing.T) {
	const writeTimeout = 200 * time.Millisecond
	result := make(chan string, 1)
	u := wsasync.Upgrader{Options: wsasync.Options{WriteTimeout: writeTimeout}}
	srv := lcServe(t, u.GoWebsocket(func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
		result <- func() string {
			m := wsasync.Binary(make([]byte, 64<<10))
			var (
				blockedAt time.Time
				err       error
				sent      int
			)
			// Keep sending until errs says the connection is gone; a
			// send that cannot proceed for writeTimeout/2 is blocked.
			deadline := time.After(lcWait)
		send:
			for sent < 4096 {
				select {
				case out <- m:
					sent++
				case e, ok := <-errs:
					if !ok {
						return "errs closed without an error"
					}
					err = e
					break send
				case <-time.After(writeTimeout / 2):
					if blockedAt.IsZero() {
						blockedAt = time.Now()
					}
				case <-deadline:
					return fmt.Sprintf("after %d MiB sent (blocked: %v), errs had nothing within %v with WriteTimeout %v", sent>>4, !blockedAt.IsZero(), lcWait, writeTimeout)
				}
			}
			switch {
			case err == nil:
				return fmt.Sprintf("sent %d MiB to a peer that reads nothing without an error", sent>>4)
			case blockedAt.IsZero():
				return fmt.Sprintf("dropped (%v) after %d MiB sent without a send ever blocking", err, sent>>4)
			}
			took := time.Since(blockedAt)
			var ce *wsasync.CloseError
			if !errors.As(err, &ce) || ce.Code != wsasync.StatusAbnormalClosure || ce.Remote || !errors.Is(err, wsasync.ErrWriteTimeout) {
				return fmt.Sprintf("errs: %v, want a CloseError 1006 with ErrWriteTimeout", err)
			}
			if _, ok, timedOut := lcRecvErr(errs, lcWait); ok || timedOut {
				return "errs not closed after its error"
			}
			if n, err := lcDrain(in, lcWait); err != nil || n != 0 {
				return fmt.Sprintf("in: %d messages, %v", n, err)
			}
			for i := range 100 {
				if err := lcSend(out, m, lcWait); err != nil {
					return fmt.Sprintf("send %d after the drop: %v", i, err)
				}
			}
			if err := lcSend(out, wsasync.Closed(4000, "late"), lcWait); err != nil {
				return fmt.Sprintf("close after the drop: %v", err)
			}
			t.Logf("sends blocked after %d MiB; dropped %v later", sent>>4, took.Round(time.Millisecond))
			return ""
		}()
	}))
	nc := lcRawDial(t, srv.WS) // reads nothing
	if s, _ := lcRecv(t, result, 6*lcWait, "handler"); s != "" {
		t.Error(s)
	}
	srv.waitServed(t, 1, lcWait)
	nc.Close()
}

// TestBackpressurePingTimeout: a peer that sends nothing, not even pongs, is
// dropped PingInterval+PongTimeout after it last sent; one that answers pings
// stays.
func TestBackpressurePingTimeout(t *testing.T) {
	const (
		interval = 50 * time.Millisecond
		timeout  = 100 * time.Millisecond
		idle     = interval + timeout
		// slack absorbs scheduling on a loaded 2-core machine under the
		// race detector; the lower bound is exact.
		slack = 1500 * time.Millisecond
	)
	u := wsasync.Upgrader{Options: wsasync.Options{PingInterval: interval, PongTimeout: timeout}}
	type end struct {
		at   time.Time
		fail string
	}
	serve := func(t *testing.T, u wsasync.Upgrader, wantEnd func(errs <-chan error) string) (*lcServer, chan end) {
		ended := make(chan end, 1)
		srv := lcServe(t, u.GoWebsocket(func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
			defer close(out)
			_, err := lcDrain(in, 4*lcWait)
			at := time.Now()
			if err != nil {
				ended <- end{at, err.Error()}
				return
			}
			ended <- end{at, wantEnd(errs)}
		}))
		return srv, ended
	}
	pingTimeout := func(errs <-chan error) string {
		return lcEnd(errs, wsasync.StatusAbnormalClosure, false, "", wsasync.ErrPingTimeout)
	}
	checkDrop := func(t *testing.T, ended chan end, t0, t1 time.Time) {
		t.Helper()
		e, _ := lcRecv(t, ended, 2*lcWait, "handler")
		if e.fail != "" {
			t.Fatal(e.fail)
		}
		if d := e.at.Sub(t0); d < idle {
			t.Errorf("dropped %v after the dial began, before interval+timeout %v", d, idle)
		}
		if d := e.at.Sub(t1); d > idle+slack {
			t.Errorf("dropped %v after the handshake, want about %v", d, idle)
		}
	}

	t.Run("silent TCP peer", func(t *testing.T) {
		srv, ended := serve(t, u, pingTimeout)
		t0 := time.Now()
		nc := lcRawDial(t, srv.WS) // never reads, never writes
		t1 := time.Now()
		checkDrop(t, ended, t0, t1)
		srv.waitServed(t, 1, lcWait)
		nc.Close()
	})

	t.Run("peer reads but never pongs", func(t *testing.T) {
		srv, ended := serve(t, u, pingTimeout)
		t0 := time.Now()
		c, _, err := lcDial(srv.WS, nil)
		if err != nil {
			t.Fatal(err)
		}
		t1 := time.Now()
		defer c.Close()
		var pings atomic.Int64
		c.SetPingHandler(func(string) error { pings.Add(1); return nil })
		readDone := make(chan error, 1)
		go func() {
			c.SetReadDeadline(time.Now().Add(2 * lcWait))
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					readDone <- err
					return
				}
			}
		}()
		checkDrop(t, ended, t0, t1)
		lcRecv(t, readDone, lcWait, "client read error after the drop")
		if pings.Load() == 0 {
			t.Error("the server sent no ping")
		}
		srv.waitServed(t, 1, lcWait)
	})

	t.Run("peer answers pings", func(t *testing.T) {
		// A longer PongTimeout, so that a pong late by a scheduling hiccup
		// is not a drop; a peer that does not answer would be dropped after
		// 300 ms, and this one is watched for more than three times that.
		const pongTimeout = 250 * time.Millisecond
		u := wsasync.Upgrader{Options: wsasync.Options{PingInterval: interval, PongTimeout: pongTimeout}}
		srv, ended := serve(t, u, func(errs <-chan error) string {
			return lcEnd(errs, wsasync.StatusNormalClosure, true, "", nil)
		})
		c, _, err := lcDial(srv.WS, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var pings atomic.Int64
		c.SetPingHandler(func(data string) error {
			pings.Add(1)
			err := c.WriteControl(websocket.PongMessage, []byte(data), time.Now().Add(lcWait))
			if errors.Is(err, websocket.ErrCloseSent) {
				return nil
			}
			return err
		})
		readDone := make(chan error, 1)
		go func() {
			c.SetReadDeadline(time.Now().Add(3 * lcWait))
			for {
				if _, _, err := c.ReadMessage(); err != nil {
					readDone <- err
					return
				}
			}
		}()
		const stay = 20 * interval // over three times interval+pongTimeout
		select {
		case e := <-ended:
			t.Fatalf("a peer answering pings was dropped (%s)", e.fail)
		case err := <-readDone:
			t.Fatalf("client read failed: %v", err)
		case <-time.After(stay):
		}
		if n := pings.Load(); n < 5 {
			t.Errorf("%d pings in %v with PingInterval %v", n, stay, interval)
		}
		c.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(lcWait))
		err, _ = lcRecv(t, readDone, lcWait, "client read")
		if !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
			t.Errorf("client: %v, want the echo of 1000", err)
		}
		if e, _ := lcRecv(t, ended, lcWait, "handler"); e.fail != "" {
			t.Error(e.fail)
		}
		srv.waitServed(t, 1, lcWait)
	})
}

// TestBackpressureDeadlineAfterWait: a write that had to wait for a slow peer
// leaves a write deadline behind; a write after that deadline has passed
// must still go out, the connection being healthy.
func TestBackpressureDeadlineAfterWait(t *testing.T) {
	const writeTimeout = 500 * time.Millisecond
	big := make([]byte, 32<<20) // more than loopback's socket buffers hold
	u := wsasync.Upgrader{Options: wsasync.Options{WriteTimeout: writeTimeout}}
	srv := lcServe(t, u.GoWebsocket(func(in <-chan wsasync.Message, out chan<- wsasync.Message, errs <-chan error) {
		defer close(out)
		out <- wsasync.Binary(big)
		for m := range in {
			out <- m
		}
	}))
	d := wsasync.Dialer{Options: wsasync.Options{ReadLimit: 64 << 20}}
	ctx, cancel := context.WithTimeout(context.Background(), lcWait)
	defer cancel()
	c, err := d.Dial(ctx, srv.WS)
	if err != nil {
		t.Fatal(err)
	}
	// The client reads nothing for a while: the server's write waits, with
	// a deadline 1.5 WriteTimeout ahead.
	time.Sleep(writeTimeout / 4)
	select {
	case m := <-c.In:
		if len(m.Data) != len(big) {
			t.Fatalf("got %d bytes, want %d", len(m.Data), len(big))
		}
	case err := <-c.Errs:
		t.Fatalf("before the big message: %v", err)
	case <-ctx.Done():
		t.Fatal("no big message")
	}
	// Past that deadline, the echo must still be written.
	time.Sleep(2 * writeTimeout)
	c.Out <- wsasync.Text("after")
	select {
	case m := <-c.In:
		if string(m.Data) != "after" {
			t.Fatalf("echo %q", m.Data)
		}
	case err := <-c.Errs:
		t.Fatalf("echo after the deadline: %v", err)
	case <-ctx.Done():
		t.Fatal("no echo after the deadline")
	}
	close(c.Out)
	<-c.Done
	srv.waitServed(t, 1, lcWait)
}
