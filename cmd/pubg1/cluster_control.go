package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// cluster up listens on a Unix socket in its data directory; the cluster
// status, stop, kill, start and down commands send it one JSON request
// each and print its answer.

// controlSocket is the control socket's name inside the data directory.
const controlSocket = "control.sock"

// controlReadTimeout bounds how long cluster up waits for a request once
// a client has connected.
const controlReadTimeout = 5 * time.Second

// controlRequest asks cluster up to do Op ("status", "start", "stop",
// "kill", "down") on Broker.
type controlRequest struct {
	Op     string `json:"op"`
	Broker int    `json:"broker,omitempty"`
}

// controlResponse is cluster up's answer: what it did, or why it did not.
type controlResponse struct {
	Message string         `json:"message,omitempty"`
	Error   string         `json:"error,omitempty"`
	Status  *clusterStatus `json:"status,omitempty"`
}

// controlServer answers the control commands for a running cluster up.
type controlServer struct {
	data    string
	cluster *localCluster
	lock    *os.File // the data directory, flock-ed while cluster up runs
	ln      *net.UnixListener
	down    func()          // makes cluster up stop the cluster
	stopped <-chan struct{} // closed once every broker has stopped
	conns   sync.WaitGroup  // the accept loop and one goroutine per connection
}

// listenControl locks the data directory, so that one cluster up at a
// time runs on it, and listens on its control socket, replacing one that
// an earlier cluster up left behind.
func listenControl(data string) (*os.File, *net.UnixListener, error) {
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, nil, fmt.Errorf("creating %s: %w", data, err)
	}
	lock, err := os.Open(data)
	if err != nil {
		return nil, nil, fmt.Errorf("opening %s: %w", data, err)
	}
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		lock.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, nil, fmt.Errorf("another cluster up is running under %s (pubg1 cluster status --data %s shows it)", data, data)
		}
		return nil, nil, fmt.Errorf("locking %s: %w", data, err)
	}
	path := filepath.Join(data, controlSocket)
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		lock.Close()
		return nil, nil, fmt.Errorf("removing the stale control socket: %w", err)
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		lock.Close()
		return nil, nil, fmt.Errorf("listening on the control socket: %w", err)
	}
	return lock, ln, nil
}

// serve answers connections until close.
func (s *controlServer) serve() {
	s.conns.Go(func() {
		for {
			conn, err := s.ln.AcceptUnix()
			if err != nil {
				return // closed
			}
			s.conns.Go(func() {
				defer conn.Close()
				s.answer(conn)
			})
		}
	})
}

// close stops listening, waits for the answers under way and removes the
// socket and the lock. The cluster has stopped, so none of them waits on
// a broker.
func (s *controlServer) close() {
	s.ln.Close() // also removes the socket file
	s.conns.Wait()
	_ = os.Remove(filepath.Join(s.data, controlSocket))
	s.lock.Close()
}

func (s *controlServer) answer(conn *net.UnixConn) {
	_ = conn.SetReadDeadline(time.Now().Add(controlReadTimeout))
	var req controlRequest
	if err := json.NewDecoder(bufio.NewReader(conn)).Decode(&req); err != nil {
		return
	}
	_ = conn.SetReadDeadline(time.Time{})
	resp := s.do(req)
	_ = json.NewEncoder(conn).Encode(resp)
}

// do carries out one request.
func (s *controlServer) do(req controlRequest) controlResponse {
	c := s.cluster
	if req.Op == "status" {
		st := c.status(s.data)
		return controlResponse{Status: &st}
	}
	if req.Op == "down" {
		c.out.line("cluster down: stopping the cluster")
		s.down()
		<-s.stopped
		return controlResponse{Message: fmt.Sprintf("stopped the cluster of %d brokers", len(c.brokers))}
	}
	b, err := c.broker(req.Broker)
	if err != nil {
		return controlResponse{Error: err.Error()}
	}
	switch req.Op {
	case "stop":
		err = c.stop(b)
	case "kill":
		err = c.kill(b)
	case "start":
		err = c.restart(b)
	default:
		err = fmt.Errorf("unknown request %q", req.Op)
	}
	if err != nil {
		return controlResponse{Error: err.Error()}
	}
	st := c.status(s.data)
	bs := st.Brokers[b.id-1]
	switch req.Op {
	case "start":
		return controlResponse{Message: fmt.Sprintf("broker %d serving on %s (pid %d)", b.id, b.addr, bs.PID)}
	case "stop":
		return controlResponse{Message: fmt.Sprintf("broker %d %s (%s)", b.id, bs.State, bs.Exit)}
	}
	return controlResponse{Message: fmt.Sprintf("broker %d killed (%s)", b.id, bs.Exit)}
}

// controlFlags are the flags of the commands that act on a running
// cluster up.
type controlFlags struct {
	Data    string        `default:"cluster-data" help:"The --data directory of the cluster up to act on."`
	Timeout time.Duration `default:"2m" help:"Upper bound for the command."`
}

// call sends req to the cluster up running under f.Data and returns its
// answer; an error it answers with is returned as an error.
func (f *controlFlags) call(req controlRequest) (controlResponse, error) {
	path := filepath.Join(f.Data, controlSocket)
	var d net.Dialer
	ctx, cancel := context.WithTimeout(context.Background(), f.Timeout)
	defer cancel()
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return controlResponse{}, fmt.Errorf("no cluster is running under %s", f.Data)
		}
		return controlResponse{}, fmt.Errorf("reaching cluster up under %s: %w", f.Data, err)
	}
	defer conn.Close()
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return controlResponse{}, fmt.Errorf("sending to cluster up under %s: %w", f.Data, err)
	}
	var resp controlResponse
	if err := json.NewDecoder(conn).Decode(&resp); err != nil {
		if errors.Is(err, io.EOF) {
			return controlResponse{}, fmt.Errorf("cluster up under %s ended without answering", f.Data)
		}
		if ne, ok := errors.AsType[net.Error](err); ok && ne.Timeout() {
			return controlResponse{}, fmt.Errorf("no answer from cluster up under %s within --timeout %s", f.Data, f.Timeout)
		}
		return controlResponse{}, fmt.Errorf("reading the answer of cluster up under %s: %w", f.Data, err)
	}
	if resp.Error != "" {
		return resp, errors.New(resp.Error)
	}
	return resp, nil
}

// brokerAction is a command that acts on one broker of a running cluster.
type brokerAction struct {
	controlFlags `embed:""`
	Broker       int `arg:"" help:"Broker ID."`
}

func (a *brokerAction) run(op string) error {
	resp, err := a.call(controlRequest{Op: op, Broker: a.Broker})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, resp.Message)
	return nil
}

type clusterStopCmd struct {
	brokerAction `embed:""`
}

func (c *clusterStopCmd) Run() error { return c.run("stop") }

type clusterKillCmd struct {
	brokerAction `embed:""`
}

func (c *clusterKillCmd) Run() error { return c.run("kill") }

type clusterStartCmd struct {
	brokerAction `embed:""`
}

func (c *clusterStartCmd) Run() error { return c.run("start") }

type clusterDownCmd struct {
	controlFlags `embed:""`
}

func (c *clusterDownCmd) Run() error {
	resp, err := c.call(controlRequest{Op: "down"})
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, resp.Message)
	return nil
}

type clusterStatusCmd struct {
	controlFlags `embed:""`
	outputFlag   `embed:""`
}

func (c *clusterStatusCmd) Run() error {
	resp, err := c.call(controlRequest{Op: "status"})
	if err != nil {
		return err
	}
	if resp.Status == nil {
		return fmt.Errorf("cluster up under %s answered without a status", c.Data)
	}
	st := *resp.Status
	if c.structured() {
		return c.emit(st)
	}
	fmt.Fprintf(stdout, "cluster under %s  bootstrap %s\n", st.Data, st.Bootstrap)
	w := table()
	fmt.Fprintln(w, "ID\tADDRESS\tPID\tSTATE\tEXIT")
	for _, b := range st.Brokers {
		pid := "-"
		if b.PID != 0 {
			pid = fmt.Sprint(b.PID)
		}
		fmt.Fprintf(w, "%d\t%s\t%s\t%s\t%s\n", b.ID, b.Address, pid, b.State, orDash(b.Exit))
	}
	return w.Flush()
}
