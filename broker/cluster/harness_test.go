package cluster_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	goredis "github.com/redis/go-redis/v9"

	"github.com/wsasync/wsasync/internal/testenv"
	"github.com/wsasync/wsasync/sente"
)

// nodeBin is the node command, built once by TestMain.
var nodeBin string

const waitFor = 30 * time.Second

// brokerURLs returns the brokers to run a test against, each with a prefix
// of its own, skipping (or failing under WSASYNC_REQUIRE_ALL) those not
// running here.
func brokerURLs(t *testing.T) map[string]string {
	t.Helper()
	prefix := fmt.Sprintf("ct%d%s", time.Now().UnixNano()%1e9, strings.ReplaceAll(t.Name(), "/", ""))
	urls := map[string]string{}
	for name, addr := range map[string]string{"redis": "127.0.0.1:6379", "nats": "127.0.0.1:4222"} {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			urls[name] = fmt.Sprintf("%s://%s?prefix=%s&node_ttl=4s", name, addr, prefix)
			t.Cleanup(func() { forget(t, name, addr, prefix) })
			continue
		}
		t.Run(name, func(t *testing.T) {
			testenv.Need(t, false, name+" at "+addr, "install the Debian package "+name+"-server and start it (.ci/run does)")
		})
	}
	return urls
}

// forget removes what the test's nodes left on a shared broker server.
func forget(t *testing.T, name, addr, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	switch name {
	case "redis":
		rdb := goredis.NewClient(&goredis.Options{Addr: addr})
		defer rdb.Close()
		keys, err := rdb.Keys(ctx, prefix+":*").Result()
		if err == nil && len(keys) > 0 {
			err = rdb.Del(ctx, keys...).Err()
		}
		if err != nil {
			t.Logf("cleaning redis up: %v", err)
		}
	case "nats":
		nc, err := natsgo.Connect("nats://" + addr)
		if err != nil {
			t.Logf("cleaning nats up: %v", err)
			return
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return
		}
		for names := js.StreamNames(ctx); ; {
			n, ok := <-names.Name()
			if !ok {
				break
			}
			if strings.HasPrefix(n, prefix+"_") || strings.HasPrefix(n, "KV_"+prefix+"_") {
				js.DeleteStream(ctx, n)
			}
		}
	}
}

// node is one server process of the cluster.
type node struct {
	t      *testing.T
	name   string
	addr   string
	cmd    *exec.Cmd
	mu     sync.Mutex
	events []string // "chsk/uidport-open alice " …
	exited chan struct{}
}

// startNode runs the node command with the broker url and extra flags.
func startNode(t *testing.T, name, brokerURL string, flags ...string) *node {
	t.Helper()
	args := append([]string{"-broker", brokerURL, "-quiet"}, flags...)
	cmd := exec.Command(nodeBin, args...)
	cmd.Stderr = &prefixWriter{t: t, prefix: name}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	n := &node{t: t, name: name, cmd: cmd, exited: make(chan struct{})}
	sc := bufio.NewScanner(out)
	if !sc.Scan() {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("%s: no address printed", name)
	}
	n.addr = strings.TrimPrefix(sc.Text(), "listening ")
	go func() {
		defer close(n.exited)
		for sc.Scan() {
			var ev map[string]string
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				n.mu.Lock()
				n.events = append(n.events, ev["ev"]+" "+ev["uid"]+" "+ev["client"])
				n.mu.Unlock()
			}
		}
		io.Copy(io.Discard, out)
		cmd.Wait()
	}()
	t.Cleanup(func() { n.stop() })
	return n
}

// stop ends the node as an operator would (SIGTERM: Shutdown).
func (n *node) stop() {
	n.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.exited:
	case <-time.After(10 * time.Second):
		n.cmd.Process.Kill()
		<-n.exited
	}
}

// kill ends the node with SIGKILL: no goodbye to anyone.
func (n *node) kill() {
	n.cmd.Process.Kill()
	<-n.exited
}

func (n *node) url() string { return "ws://" + n.addr + "/chsk" }

// count returns how many of the node's presence events are ev.
func (n *node) count(ev string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, e := range n.events {
		if e == ev {
			c++
		}
	}
	return c
}

// push asks the node to push from … from+count-1 to target/to.
func (n *node) push(target, to string, from, count int) error {
	q := url.Values{"target": {target}, "to": {to}, "id": {"t/n"}, "from": {fmt.Sprint(from)}, "count": {fmt.Sprint(count)}}
	resp, err := http.Post("http://"+n.addr+"/push?"+q.Encode(), "", nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("push: %d %s", resp.StatusCode, body)
	}
	return nil
}

func (n *node) users() ([]string, error) {
	resp, err := http.Get("http://" + n.addr + "/users")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var users []string
	err = json.NewDecoder(resp.Body).Decode(&users)
	return users, err
}

// total sums the count of ev over nodes.
func total(ev string, nodes ...*node) int {
	c := 0
	for _, n := range nodes {
		c += n.count(ev)
	}
	return c
}

// eventually polls cond until it holds or waitFor passes.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", waitFor, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type prefixWriter struct {
	t      *testing.T
	prefix string
}

func (w *prefixWriter) Write(p []byte) (int, error) {
	for _, l := range strings.Split(strings.TrimRight(string(p), "\n"), "\n") {
		w.t.Log(w.prefix + ": " + l)
	}
	return len(p), nil
}

// recorder is a Go client and the integers it received, in order.
type recorder struct {
	c    *sente.Client
	mu   sync.Mutex
	got  []int
	done chan struct{}
}

func connect(t *testing.T, wsURL, uid, clientID string) *recorder {
	t.Helper()
	c := sente.NewClient(wsURL, sente.ClientOptions{
		ClientID:   clientID,
		Params:     url.Values{"u": {uid}},
		MinBackoff: 20 * time.Millisecond,
		MaxBackoff: 300 * time.Millisecond,
		Logger:     quiet,
	})
	r := &recorder{c: c, done: make(chan struct{})}
	go func() {
		defer close(r.done)
		for ev := range c.Events() {
			var v int
			if ev.ID == "t/n" && ev.Decode(&v) == nil {
				r.mu.Lock()
				r.got = append(r.got, v)
				r.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { r.close() })
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	for st := c.State(); !st.Open; {
		select {
		case st = <-c.StateChanges():
		case <-ctx.Done():
			t.Fatalf("client %s of %s: not open within %v", clientID, uid, waitFor)
		}
	}
	return r
}

func (r *recorder) close() {
	r.c.Close()
	<-r.done
}

func (r *recorder) received() []int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]int(nil), r.got...)
}

// expectSeq waits until r has n integers, then checks they are from … from+n-1
// (the integers it received, after skip of them).
func (r *recorder) expectSeq(t *testing.T, what string, skip, from, n int) {
	t.Helper()
	eventually(t, fmt.Sprintf("%s: %d pushes", what, n), func() bool { return len(r.received()) >= skip+n })
	got := r.received()[skip:]
	if len(got) != n {
		t.Fatalf("%s: %d pushes, want %d (duplicates?)", what, len(got), n)
	}
	for i, v := range got {
		if v != from+i {
			t.Fatalf("%s: push %d is %d, want %d (%v…)", what, i, v, from+i, got[max(0, i-3):min(len(got), i+3)])
		}
	}
}

var quiet = sloggerDiscard()

// lb is a TCP load balancer without sticky sessions: each connection goes to
// the next backend that accepts it.
type lb struct {
	ln       net.Listener
	mu       sync.Mutex
	backends []string
	next     int
	conns    []net.Conn
	wg       sync.WaitGroup
}

func startLB(t *testing.T, backends ...string) *lb {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &lb{ln: ln, backends: backends}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s := b.dial()
			if s == nil {
				c.Close()
				continue
			}
			b.mu.Lock()
			b.conns = append(b.conns, c, s)
			b.mu.Unlock()
			b.wg.Add(2)
			go func() { defer b.wg.Done(); io.Copy(s, c); s.Close() }()
			go func() { defer b.wg.Done(); io.Copy(c, s); c.Close() }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		b.mu.Lock()
		for _, c := range b.conns {
			c.Close()
		}
		b.mu.Unlock()
		b.wg.Wait()
	})
	return b
}

func (b *lb) dial() net.Conn {
	b.mu.Lock()
	defer b.mu.Unlock()
	for range b.backends {
		addr := b.backends[b.next%len(b.backends)]
		b.next++
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			return c
		}
	}
	return nil
}

func (b *lb) url() string { return "ws://" + b.ln.Addr().String() + "/chsk" }

func buildNode() (string, func(), error) {
	dir, err := os.MkdirTemp("", "cluster-node")
	if err != nil {
		return "", nil, err
	}
	bin := filepath.Join(dir, "node")
	cmd := exec.Command("go", "build", "-race", "-o", bin, "./cmd/node")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	return bin, func() { os.RemoveAll(dir) }, nil
}
