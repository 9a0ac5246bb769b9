package kproto

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pubg1/pubg1/internal/ktest"
	"github.com/rs/zerolog"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const testTimeout = 10 * time.Second

// fakeBroker is a registry with a few handlers whose behaviour the tests
// steer: Metadata answers only once release is closed, which lets a later
// request be ready first.
type fakeBroker struct {
	reg              *Registry
	release          chan struct{}
	apiVersionsCalls atomic.Int32
	metadataCalls    atomic.Int32
	stashed          chan func(kmsg.Response) // Heartbeat handlers hand respond to the test
	handlers         sync.WaitGroup           // goroutines started by handlers
}

func newFakeBroker(t *testing.T) *fakeBroker {
	f := &fakeBroker{reg: NewRegistry(), release: make(chan struct{}), stashed: make(chan func(kmsg.Response), 16)}
	t.Cleanup(f.handlers.Wait)
	f.reg.Register(API{Key: 18, MinVersion: 0, MaxVersion: 4, Handle: func(_ context.Context, req *Request, respond func(kmsg.Response)) {
		f.apiVersionsCalls.Add(1)
		resp := req.Msg.(*kmsg.ApiVersionsRequest).ResponseKind().(*kmsg.ApiVersionsResponse)
		resp.ApiKeys = f.reg.Versions()
		respond(resp)
	}})
	f.reg.Register(API{Key: 3, MinVersion: 0, MaxVersion: 12, Handle: func(ctx context.Context, req *Request, respond func(kmsg.Response)) {
		f.metadataCalls.Add(1)
		resp := req.Msg.ResponseKind()
		f.handlers.Add(1)
		go func() {
			defer f.handlers.Done()
			select {
			case <-f.release:
				respond(resp)
			case <-ctx.Done(): // the connection is gone
			}
		}()
	}})
	f.reg.Register(API{Key: 0, MinVersion: 3, MaxVersion: 11, Handle: func(_ context.Context, req *Request, respond func(kmsg.Response)) {
		if r := req.Msg.(*kmsg.ProduceRequest); r.Acks == 0 {
			if len(r.Topics) == 1 && r.Topics[0].Topic == "fail" {
				respond(CloseConnection)
				return
			}
			respond(nil)
			return
		}
		respond(req.Msg.ResponseKind())
	}})
	f.reg.Register(API{Key: 10, MinVersion: 1, MaxVersion: 2,
		Handle: func(_ context.Context, req *Request, respond func(kmsg.Response)) {
			respond(req.Msg.ResponseKind())
		},
		Reject: func(req kmsg.Request, code int16) kmsg.Response {
			resp := req.ResponseKind().(*kmsg.FindCoordinatorResponse)
			resp.ErrorCode = code
			return resp
		},
	})
	f.reg.Register(API{Key: 2, MinVersion: 0, MaxVersion: 8, Handle: func(_ context.Context, req *Request, respond func(kmsg.Response)) {
		first := req.Msg.ResponseKind().(*kmsg.ListOffsetsResponse)
		first.ThrottleMillis = 1
		second := req.Msg.ResponseKind().(*kmsg.ListOffsetsResponse)
		second.ThrottleMillis = 2
		respond(first)
		respond(second) // a handler bug that must be ignored
	}})
	f.reg.Register(API{Key: 12, MinVersion: 0, MaxVersion: 4, Handle: func(_ context.Context, _ *Request, respond func(kmsg.Response)) {
		f.stashed <- respond
	}})
	f.reg.Register(API{Key: 11, MinVersion: 0, MaxVersion: 9, Handle: func(_ context.Context, _ *Request, respond func(kmsg.Response)) {
		respond(kmsg.NewPtrHeartbeatResponse()) // a handler bug: the wrong API
	}})
	return f
}

// server runs Serve for every connection accepted on 127.0.0.1:0.
type server struct {
	addr   string
	errc   chan error // one value per served connection
	cancel context.CancelFunc
}

func startServer(t *testing.T, reg *Registry, cfg ConnConfig) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Logger = zerolog.New(zerolog.NewTestWriter(t))
	ctx, cancel := context.WithCancel(context.Background())
	s := &server{addr: ln.Addr().String(), errc: make(chan error, 64), cancel: cancel}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				s.errc <- Serve(ctx, nc, reg, cfg)
			}()
		}
	}()
	t.Cleanup(func() {
		cancel()
		_ = ln.Close()
		wg.Wait()
	})
	return s
}

// serveErr waits for the next connection's Serve to return.
func (s *server) serveErr(t *testing.T) error {
	t.Helper()
	select {
	case err := <-s.errc:
		return err
	case <-time.After(testTimeout):
		t.Fatal("Serve did not return")
		return nil
	}
}

func dial(t *testing.T, addr string) *ktest.Conn {
	t.Helper()
	c := ktest.Dial(t, addr)
	c.ClientID = "kproto-test"
	return c
}

func encodeRequest(corrID int32, req kmsg.Request) []byte {
	id := "kproto-test"
	body := AppendRequestHeader(nil, Header{Key: req.Key(), Version: req.GetVersion(), CorrelationID: corrID, ClientID: &id})
	return req.AppendTo(body)
}
