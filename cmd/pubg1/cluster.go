package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/pubg1/pubg1/bench"
)

type clusterCmd struct {
	Up     clusterUpCmd     `cmd:"" help:"Start a local cluster of broker processes; it runs until Ctrl-C or cluster down."`
	Status clusterStatusCmd `cmd:"" help:"Show the brokers of the local cluster that cluster up runs: address, PID, running, stopped or exited."`
	Stop   clusterStopCmd   `cmd:"" help:"Stop a broker of the local cluster with SIGTERM and wait for it to exit."`
	Kill   clusterKillCmd   `cmd:"" help:"Kill a broker of the local cluster with SIGKILL, as a crash would."`
	Start  clusterStartCmd  `cmd:"" help:"Start a stopped or killed broker of the local cluster again and wait until it serves."`
	Down   clusterDownCmd   `cmd:"" help:"Stop every broker of the local cluster and end cluster up."`
	Info   clusterInfoCmd   `cmd:"" help:"Show the cluster ID, the controller and the brokers of any Kafka-compatible cluster."`
	Health clusterHealthCmd `cmd:"" help:"Check for leaderless, offline and under-replicated partitions; exit code 1 when any."`
}

type clusterUpCmd struct {
	Brokers      int           `default:"4" help:"Number of brokers."`
	Host         string        `default:"127.0.0.1" help:"Address the brokers listen on."`
	BasePort     int           `name:"base-port" default:"9092" help:"Broker N listens on base-port+N-1."`
	Data         string        `default:"cluster-data" help:"Parent directory of the brokers' data directories; also holds the control socket the other cluster commands use."`
	LogLevel     string        `name:"broker-log-level" default:"warn" help:"Log level of the brokers."`
	StartTimeout time.Duration `name:"start-timeout" default:"60s" help:"How long the brokers, and a broker started again, may take to serve."`
}

// errClusterDown is why cluster up stops after cluster down.
var errClusterDown = errors.New("cluster down")

// Run starts brokers 1..N as children of this process, all peers of each
// other, waits until each serves, and then keeps them under its control
// socket until it is interrupted or told to stop. A broker that exits is
// reported and left stopped; the others go on.
func (c *clusterUpCmd) Run() error {
	if c.Brokers < 1 {
		return fmt.Errorf("--brokers must be at least 1")
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding the pubg1 binary: %w", err)
	}
	lock, ln, err := listenControl(c.Data)
	if err != nil {
		return err
	}
	sigCtx, stopSignals := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stopSignals()
	ctx, down := context.WithCancelCause(sigCtx)
	defer down(nil)

	lc := &localCluster{ctx: ctx, out: &linePrinter{w: stdout}, startTimeout: c.StartTimeout}
	var addrs []string
	for id := 1; id <= c.Brokers; id++ {
		addrs = append(addrs, fmt.Sprintf("%s:%d", c.Host, c.BasePort+id-1))
	}
	var logMu sync.Mutex // serialises the brokers' output lines
	for id := 1; id <= c.Brokers; id++ {
		dir := filepath.Join(c.Data, fmt.Sprint(id))
		log := &prefixWriter{prefix: fmt.Sprintf("[broker %d] ", id), mu: &logMu, w: os.Stderr}
		lc.brokers = append(lc.brokers, &localBroker{
			id: id, addr: addrs[id-1], dir: dir, log: log, state: stateStarting,
			proc: &bench.Proc{
				Binary:         self,
				Addr:           addrs[id-1],
				Args:           []string{"--id", fmt.Sprint(id), "--data", dir, "--peers", bench.Peers(addrs), "--log-level", c.LogLevel},
				LogTo:          log,
				KillWithParent: true,
			},
		})
	}
	stopped := make(chan struct{})
	srv := &controlServer{data: c.Data, cluster: lc, lock: lock, ln: ln, down: func() { down(errClusterDown) }, stopped: stopped}
	srv.serve()

	err = c.startAll(ctx, lc)
	if err == nil {
		lc.out.line("cluster of %d brokers serving; bootstrap with %s; pubg1 cluster status|stop N|kill N|start N|down --data %s acts on it; Ctrl-C stops it",
			c.Brokers, lc.bootstrap(), c.Data)
		<-ctx.Done()
	}
	if ctx.Err() != nil && !errors.Is(context.Cause(ctx), errClusterDown) {
		lc.out.line("stopping the cluster")
	}
	lc.stopAll()
	close(stopped)
	srv.close()
	if ctx.Err() != nil {
		return nil // stopped on purpose, perhaps while it started
	}
	return err
}

// startAll launches every broker, then waits until each serves: its
// metadata names a controller and lists all the brokers. The first broker
// that exits or does not serve in time fails the start.
func (c *clusterUpCmd) startAll(ctx context.Context, lc *localCluster) error {
	ctx, cancel := context.WithTimeout(ctx, c.StartTimeout)
	defer cancel()
	for _, b := range lc.brokers {
		b.op.Lock()
		err := lc.launch(ctx, b)
		b.op.Unlock()
		if err != nil {
			return err
		}
	}
	lc.out.line("waiting for %d brokers to serve", len(lc.brokers))
	all := make([]int, len(lc.brokers))
	for i := range all {
		all[i] = i + 1
	}
	errs := make(chan error, len(lc.brokers))
	var wg sync.WaitGroup
	for _, b := range lc.brokers {
		wg.Go(func() {
			err := lc.awaitServing(ctx, b, c.StartTimeout, func() []int { return all })
			errs <- err // before cancel, so that the first failure comes first
			if err != nil {
				cancel()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
