package ktest

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// answer serves one connection: it reads one request frame and writes
// reply(corr) as the response frame.
func answer(t *testing.T, reply func(corr int32) []byte) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { _ = ln.Close(); <-done })
	go func() {
		defer close(done)
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		var size [4]byte
		if _, err := io.ReadFull(nc, size[:]); err != nil {
			return
		}
		body := make([]byte, binary.BigEndian.Uint32(size[:]))
		if _, err := io.ReadFull(nc, body); err != nil || len(body) < 8 {
			return
		}
		corr := int32(binary.BigEndian.Uint32(body[4:]))
		_, _ = nc.Write(Frame(reply(corr)))
		_, _ = nc.Read(size[:]) // until the client closes
	}()
	return ln.Addr().String()
}

func heartbeatResponse(corr int32, tags []byte) []byte {
	resp := kmsg.NewPtrHeartbeatResponse()
	resp.SetVersion(4) // flexible: a tagged field section follows the correlation id
	resp.ErrorCode = 27
	b := binary.BigEndian.AppendUint32(nil, uint32(corr))
	b = append(b, tags...)
	return resp.AppendTo(b)
}

func heartbeat() *kmsg.HeartbeatRequest {
	req := kmsg.NewPtrHeartbeatRequest()
	req.SetVersion(4)
	return req
}

func TestDoSkipsResponseHeaderTags(t *testing.T) {
	// One tag (7) of two bytes in the response header.
	addr := answer(t, func(corr int32) []byte { return heartbeatResponse(corr, []byte{1, 7, 2, 0xab, 0xcd}) })
	resp := Dial(t, addr).Do(heartbeat()).(*kmsg.HeartbeatResponse)
	if resp.ErrorCode != 27 {
		t.Fatalf("error code %d, want 27", resp.ErrorCode)
	}
}

func TestExactRefusesBytesThatDoNotReencode(t *testing.T) {
	addr := answer(t, func(corr int32) []byte {
		return append(heartbeatResponse(corr, []byte{0}), 0xff) // a trailing byte
	})
	c, err := Connect(addr, DefaultTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Exact = true
	if _, err := c.RoundTrip(heartbeat(), DefaultTimeout); err == nil {
		t.Fatal("a response with a trailing byte decoded under Exact")
	}
}

func TestAwaitReportsNoAnswer(t *testing.T) {
	release := make(chan struct{})
	addr := answer(t, func(corr int32) []byte {
		<-release
		return heartbeatResponse(corr, []byte{0})
	})
	c, err := Connect(addr, DefaultTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := heartbeat()
	corr, err := c.WriteRequest(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Await(req, corr, 50*time.Millisecond); !errors.Is(err, ErrNoAnswer) {
		t.Fatalf("Await before the answer: %v, want ErrNoAnswer", err)
	}
	close(release)
	if _, err := c.Await(req, corr, DefaultTimeout); err != nil {
		t.Fatalf("Await after ErrNoAnswer: %v", err)
	}
}

func TestUntilLooksOnceMoreAfterTheDeadline(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	calls := 0
	if !Until(ctx, time.Hour, func() bool { calls++; return calls == 2 }) {
		t.Fatal("a condition true on the last look was missed")
	}
	if Until(ctx, time.Hour, func() bool { return false }) {
		t.Fatal("Until reported a condition that never held")
	}
}
