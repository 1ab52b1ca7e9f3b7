package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Every child process (nodes, broker servers, load balancers) is recorded
// here, so that killAll can end them whatever way the command ends: normal
// return, error, panic in main, or a signal. Each child also gets
// Pdeathsig=SIGKILL, so that it dies with this process even when it is
// itself killed with SIGKILL (or a goroutine other than main panics), and
// its own process group, so that a Ctrl-C in the terminal reaches this
// command only, which then ends the children in order.
type child struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has been waited for
	err  error         // Wait's result, valid after done
}

var children = struct {
	sync.Mutex
	set map[*child]struct{}
}{set: map[*child]struct{}{}}

// startChild starts cmd; parentEnds are the child's ends of pipes made by
// pipe, closed here once it has them.
func startChild(name string, cmd *exec.Cmd, parentEnds ...*os.File) (*child, error) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	err := cmd.Start()
	for _, f := range parentEnds {
		f.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{})}
	children.Lock()
	children.set[c] = struct{}{}
	children.Unlock()
	go func() {
		c.err = cmd.Wait()
		children.Lock()
		delete(children.set, c)
		children.Unlock()
		close(c.done)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// pipe returns an OS pipe. Unlike cmd.StdoutPipe, Wait does not close the
// read end, so the output can be read to its end after the process exited.
func pipe() (r, w *os.File, err error) { return os.Pipe() }

// kill sends SIGKILL and waits (bounded) for the process to be reaped.
func (c *child) kill() {
	c.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-c.done:
	case <-time.After(10 * time.Second):
		logf("warning: %s (pid %d) not reaped 10 s after SIGKILL", c.name, c.pid())
	}
}

// stop asks the process to end (SIGTERM) and kills it after grace.
func (c *child) stop(grace time.Duration) {
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(grace):
		logf("warning: %s (pid %d) still running %v after SIGTERM: killing it", c.name, c.pid(), grace)
		c.kill()
	}
}

// killAll kills every child still running.
func killAll() {
	children.Lock()
	list := make([]*child, 0, len(children.set))
	for c := range children.set {
		list = append(list, c)
	}
	children.Unlock()
	var wg sync.WaitGroup
	for _, c := range list {
		wg.Go(c.kill)
	}
	wg.Wait()
}

// ---- nodes ----

// node is one process of broker/cluster/cmd/node.
type node struct {
	name string
	addr string
	c    *child

	mu       sync.Mutex
	events   map[string]int      // presence events by kind
	byUser   map[string][]string // presence events by user: "<s since the soak's pushes began> ev client"
	warnings int                 // lines on stderr (the node runs with -quiet: warnings and errors)
	tooSlow  int                 // of which "client too slow"
	firstLog []string            // the first few of them
	kinds    map[string]int      // the lines by message
	example  map[string]string   // the first line of each kind
	outDone  chan struct{}
}

const nodeStart = 30 * time.Second

func startNode(bin, name, brokerURL string, extra ...string) (*node, error) {
	args := append([]string{"-broker", brokerURL, "-quiet"}, extra...)
	cmd := exec.Command(bin, args...)
	out, outW, err := pipe()
	if err != nil {
		return nil, err
	}
	errp, errW, err := pipe()
	if err != nil {
		out.Close()
		outW.Close()
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = outW, errW
	c, err := startChild(name, cmd, outW, errW)
	if err != nil {
		out.Close()
		errp.Close()
		return nil, err
	}
	n := &node{name: name, c: c, events: map[string]int{}, byUser: map[string][]string{}, kinds: map[string]int{}, example: map[string]string{}, outDone: make(chan struct{})}
	go n.readStderr(errp)
	first := make(chan string, 1)
	go func() {
		defer close(n.outDone)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		if sc.Scan() {
			first <- sc.Text()
		}
		close(first)
		for sc.Scan() {
			var ev struct{ Ev, UID, Client string }
			if json.Unmarshal(sc.Bytes(), &ev) == nil {
				at := since(time.Now())
				n.mu.Lock()
				n.events[ev.Ev]++
				n.byUser[ev.UID] = append(n.byUser[ev.UID], at+" "+strings.TrimPrefix(ev.Ev, "chsk/")+" "+ev.Client)
				n.mu.Unlock()
			}
		}
		io.Copy(io.Discard, out)
		out.Close()
	}()
	select {
	case l, ok := <-first:
		addr, found := strings.CutPrefix(l, "listening ")
		if !ok || !found {
			c.kill()
			return nil, fmt.Errorf("%s: did not print its address (first line %q): %s", name, l, n.logSummary())
		}
		n.addr = addr
	case <-time.After(nodeStart):
		c.kill()
		return nil, fmt.Errorf("%s: no address printed within %v", name, nodeStart)
	}
	return n, nil
}

func (n *node) readStderr(r *os.File) {
	defer r.Close()
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		l := sc.Text()
		if strings.Contains(l, " INFO ") || strings.Contains(l, "level=INFO") {
			continue // the brokers log at Info whatever -quiet says
		}
		n.mu.Lock()
		n.warnings++
		k := logKind(l)
		n.kinds[k]++
		if _, ok := n.example[k]; !ok {
			n.example[k] = l
		}
		if strings.Contains(l, "too slow") {
			n.tooSlow++
		}
		if len(n.firstLog) < 5 {
			n.firstLog = append(n.firstLog, l)
		}
		n.mu.Unlock()
	}
}

var (
	slogText = regexp.MustCompile(`level=(\w+) msg="((?:[^"\\]|\\.)*)"`)
	slogStd  = regexp.MustCompile(`^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (INFO|WARN|ERROR|DEBUG) (.*?)(?: \w+=|$)`)
	goLog    = regexp.MustCompile(`^(\w+: )?\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (?:\S+\.go:\d+: )?(.*)$`)
	digits   = regexp.MustCompile(`\d+`)
)

// logKind names what a node's log line says, without its variable parts.
func logKind(l string) string {
	var k string
	if m := slogText.FindStringSubmatch(l); m != nil {
		k = m[1] + " " + m[2]
	} else if m := slogStd.FindStringSubmatch(l); m != nil {
		k = m[1] + " " + m[2]
	} else if m := goLog.FindStringSubmatch(l); m != nil {
		k = m[1] + m[2]
	} else {
		k = l
	}
	k = digits.ReplaceAllString(k, "N")
	if len(k) > 140 {
		k = k[:140] + "…"
	}
	return k
}

func (n *node) logSummary() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return fmt.Sprintf("%d log lines, first: %q", n.warnings, n.firstLog)
}

func (n *node) event(ev string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.events[ev]
}

// history returns the node's presence events of user uid.
func (n *node) history(uid string) []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]string(nil), n.byUser[uid]...)
}

func (n *node) url() string { return "ws://" + n.addr + "/chsk" }

var httpc = &http.Client{Transport: &http.Transport{
	MaxIdleConnsPerHost: 32,
	DisableCompression:  true,
	DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
}}

// push asks the node to push the integers from … from+count-1 with event id
// id to each user of to. It returns the HTTP status (0 when no answer came).
func (n *node) push(ctx context.Context, id string, to []string, from, count, par int, stamp bool) (int, error) {
	q := url.Values{"target": {"user"}, "id": {id}, "to": to,
		"from": {fmt.Sprint(from)}, "count": {fmt.Sprint(count)}, "par": {fmt.Sprint(par)}}
	if stamp {
		q.Set("stamp", "1")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+n.addr+"/push?"+q.Encode(), nil)
	if err != nil {
		return 0, err
	}
	resp, err := httpc.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return resp.StatusCode, fmt.Errorf("%s /push: %d %s", n.name, resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return resp.StatusCode, nil
}

// users returns the connected users the node reports (the cluster's view).
func (n *node) users(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+n.addr+"/users", nil)
	resp, err := httpc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("%s /users: %d %s", n.name, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	var users []string
	return users, json.NewDecoder(resp.Body).Decode(&users)
}

// stop ends the node with SIGTERM (Shutdown) and waits for its output.
func (n *node) stop() {
	n.c.stop(15 * time.Second)
	select {
	case <-n.outDone:
	case <-time.After(5 * time.Second):
	}
}

// kill ends the node with SIGKILL: no goodbye to anyone.
func (n *node) kill() { n.c.kill() }

// ---- broker servers of our own ----

// privateBroker is a redis-server or nats-server that this command runs on
// a free port, so that the soak can kill it and start it again on the same
// port. Redis keeps nothing on disk (--save "" --appendonly no): a restart
// loses the log and presence. NATS JetStream keeps its store in a directory
// of its own (-sd), which survives the restart.
type privateBroker struct {
	kind string
	argv []string
	port int
	dir  string // NATS store, removed by close
	c    *child
	url  string // without query
}

func newPrivateBroker(kind string) (*privateBroker, error) {
	bin, err := exec.LookPath(kind + "-server")
	if err != nil {
		return nil, fmt.Errorf("the soak needs %s-server on PATH (Debian package %s-server): %w", kind, kind, err)
	}
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	b := &privateBroker{kind: kind, port: port}
	switch kind {
	case "redis":
		b.argv = []string{bin, "--port", fmt.Sprint(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--maxclients", "10000", "--loglevel", "warning"}
		b.url = fmt.Sprintf("redis://127.0.0.1:%d", port)
	case "nats":
		b.dir, err = os.MkdirTemp("", "cluster-bench-nats")
		if err != nil {
			return nil, err
		}
		dir := b.dir
		atExit(func() { os.RemoveAll(dir) })
		b.argv = []string{bin, "-a", "127.0.0.1", "-p", fmt.Sprint(port), "-js", "-sd", b.dir}
		b.url = fmt.Sprintf("nats://127.0.0.1:%d", port)
	default:
		return nil, fmt.Errorf("unknown broker %q", kind)
	}
	return b, b.start()
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// start runs the server and waits until it accepts connections.
func (b *privateBroker) start() error {
	cmd := exec.Command(b.argv[0], b.argv[1:]...)
	var errBuf syncBuffer
	cmd.Stdout, cmd.Stderr = &errBuf, &errBuf
	c, err := startChild(b.kind+"-server", cmd)
	if err != nil {
		return err
	}
	b.c = c
	addr := fmt.Sprintf("127.0.0.1:%d", b.port)
	deadline := time.Now().Add(30 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			conn.Close()
			return nil
		}
		if c.exited() || time.Now().After(deadline) {
			c.kill()
			return fmt.Errorf("%s-server on %s did not come up (%v): %s", b.kind, addr, err, errBuf.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// kill ends the server with SIGKILL.
func (b *privateBroker) kill() {
	if b.c != nil {
		b.c.kill()
		b.c = nil
	}
}

func (b *privateBroker) close() {
	b.kill()
	if b.dir != "" {
		os.RemoveAll(b.dir)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.b) < 64<<10 {
		s.b = append(s.b, p...)
	}
	return len(p), nil
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.TrimSpace(string(s.b))
}

// ---- load balancers ----

// lbProc is a load balancer child: this binary re-executed with -lb-child.
type lbProc struct {
	addr  string
	c     *child
	stdin *os.File // closing it ends the balancer
}

func startLB(name string, backends []string) (*lbProc, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(self, "-lb-child", "-lb-backends", strings.Join(backends, ","))
	inR, in, err := pipe()
	if err != nil {
		return nil, err
	}
	out, outW, err := pipe()
	if err != nil {
		inR.Close()
		in.Close()
		return nil, err
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, os.Stderr
	c, err := startChild(name, cmd, inR, outW)
	if err != nil {
		in.Close()
		out.Close()
		return nil, err
	}
	first := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		if sc.Scan() {
			first <- sc.Text()
		}
		close(first)
		io.Copy(io.Discard, out)
		out.Close()
	}()
	select {
	case l := <-first:
		addr, ok := strings.CutPrefix(l, "listening ")
		if !ok {
			c.kill()
			return nil, fmt.Errorf("%s: unexpected first line %q", name, l)
		}
		return &lbProc{addr: addr, c: c, stdin: in}, nil
	case <-time.After(10 * time.Second):
		c.kill()
		return nil, errors.New(name + ": no address within 10 s")
	}
}

func (l *lbProc) url() string { return "ws://" + l.addr + "/chsk" }

func (l *lbProc) stop() {
	l.stdin.Close()
	select {
	case <-l.c.done:
	case <-time.After(5 * time.Second):
		l.c.kill()
	}
}
