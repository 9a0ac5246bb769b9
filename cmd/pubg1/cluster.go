package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pubg1/pubg1/bench"
)

type clusterCmd struct {
	Up     clusterUpCmd     `cmd:"" help:"Start a local cluster of broker processes and stop them all on Ctrl-C."`
	Info   clusterInfoCmd   `cmd:"" help:"Show the cluster ID, the controller and the brokers of any Kafka-compatible cluster."`
	Health clusterHealthCmd `cmd:"" help:"Check for leaderless, offline and under-replicated partitions; exit code 1 when any."`
}

type clusterUpCmd struct {
	Brokers  int    `default:"4" help:"Number of brokers."`
	Host     string `default:"127.0.0.1" help:"Address the brokers listen on."`
	BasePort int    `name:"base-port" default:"9092" help:"Broker N listens on base-port+N-1."`
	Data     string `default:"cluster-data" help:"Parent directory of the brokers' data directories."`
	LogLevel string `name:"broker-log-level" default:"warn" help:"Log level of the brokers."`
}

// Run starts brokers 1..N as children of this process, all peers of each
// other, and stops them when this process is interrupted.
func (c *clusterUpCmd) Run() error {
	if c.Brokers < 1 {
		return fmt.Errorf("--brokers must be at least 1")
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the pubg1 binary: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var addrs []string
	for id := 1; id <= c.Brokers; id++ {
		addrs = append(addrs, fmt.Sprintf("%s:%d", c.Host, c.BasePort+id-1))
	}
	var procs []*bench.Proc
	var mu sync.Mutex // serialises the brokers' output lines
	stopAll := func() {
		var wg sync.WaitGroup
		for _, p := range procs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				p.Stop()
			}()
		}
		wg.Wait()
	}
	for id := 1; id <= c.Brokers; id++ {
		p := &bench.Proc{
			Binary:         self,
			Addr:           addrs[id-1],
			Args:           []string{"--id", fmt.Sprint(id), "--data", filepath.Join(c.Data, fmt.Sprint(id)), "--peers", bench.Peers(addrs), "--log-level", c.LogLevel},
			LogTo:          &prefixWriter{prefix: fmt.Sprintf("[broker %d] ", id), mu: &mu, w: os.Stderr},
			KillWithParent: true,
		}
		startCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := p.Start(startCtx)
		cancel()
		if err != nil {
			stopAll()
			return fmt.Errorf("starting broker %d: %w", id, err)
		}
		procs = append(procs, p)
		fmt.Printf("broker %d  %s  pid %d\n", id, p.Addr, p.Pid())
	}
	fmt.Printf("cluster of %d brokers up; bootstrap with %s; Ctrl-C stops it\n", c.Brokers, procs[0].Addr)
	exited := make(chan int, len(procs))
	for i, p := range procs {
		go func() {
			<-p.Exited()
			exited <- i + 1
		}()
	}
	select {
	case <-ctx.Done():
		fmt.Println("stopping the cluster")
	case id := <-exited:
		fmt.Printf("broker %d exited; stopping the cluster\n", id)
	}
	stopAll()
	return nil
}

// prefixWriter writes each line of a broker's output with its name.
type prefixWriter struct {
	prefix string
	mu     *sync.Mutex
	w      *os.File
	part   []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.part = append(p.part, b...)
	for {
		i := strings.IndexByte(string(p.part), '\n')
		if i < 0 {
			break
		}
		if _, err := fmt.Fprintf(p.w, "%s%s\n", p.prefix, p.part[:i]); err != nil {
			return 0, err
		}
		p.part = p.part[i+1:]
	}
	return len(b), nil
}
