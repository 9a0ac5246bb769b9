package raftmux

import (
	"sync"

	"github.com/hashicorp/raft"
)

// pipeline wraps hashicorp/raft's append pipeline so that its answers are
// always taken off it. Raft's reader of the answers stops at the first
// failed one, and its sender stops only between two sends: with the
// pipeline's queues full (a follower cut off, every append in flight
// failing), the decoder then waits to hand over an answer, the sender
// waits for room to send, and the follower's replication (and Raft's
// shutdown, which waits for it) hangs for good. Here a goroutine owned by
// the pipeline queues the answers until Raft takes them or closes it.
type pipeline struct {
	raft.AppendPipeline
	out       chan raft.AppendFuture
	stop      chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

// AppendEntriesPipeline implements raft.Transport.
func (t *Transport) AppendEntriesPipeline(id raft.ServerID, target raft.ServerAddress) (raft.AppendPipeline, error) {
	inner, err := t.NetworkTransport.AppendEntriesPipeline(id, target)
	if err != nil {
		return nil, err
	}
	p := &pipeline{AppendPipeline: inner, out: make(chan raft.AppendFuture), stop: make(chan struct{}), done: make(chan struct{})}
	go p.forward(inner.Consumer())
	return p, nil
}

// forward runs until Close.
func (p *pipeline) forward(in <-chan raft.AppendFuture) {
	defer close(p.done)
	var queue []raft.AppendFuture
	for {
		var out chan raft.AppendFuture
		var next raft.AppendFuture
		if len(queue) > 0 {
			out, next = p.out, queue[0]
		}
		select {
		case f := <-in:
			queue = append(queue, f)
		case out <- next:
			queue[0] = nil
			queue = queue[1:]
		case <-p.stop:
			return
		}
	}
}

// Consumer implements raft.AppendPipeline.
func (p *pipeline) Consumer() <-chan raft.AppendFuture { return p.out }

// Close implements raft.AppendPipeline.
func (p *pipeline) Close() error {
	err := p.AppendPipeline.Close()
	p.closeOnce.Do(func() { close(p.stop) })
	<-p.done
	return err
}
