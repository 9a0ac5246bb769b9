package kproto

import (
	"context"
	"encoding/binary"
	"errors"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/pubg1/pubg1/internal/ktest"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func apiVersionsRequest(version int16) *kmsg.ApiVersionsRequest {
	req := kmsg.NewPtrApiVersionsRequest()
	req.SetVersion(version)
	req.ClientSoftwareName, req.ClientSoftwareVersion = "kproto-test", "1"
	return req
}

func sameKeys(a, b []kmsg.ApiVersionsResponseApiKey) bool {
	return slices.EqualFunc(a, b, func(x, y kmsg.ApiVersionsResponseApiKey) bool {
		return x.ApiKey == y.ApiKey && x.MinVersion == y.MinVersion && x.MaxVersion == y.MaxVersion
	})
}

func TestApiVersions(t *testing.T) {
	f := newFakeBroker(t)
	srv := startServer(t, f.reg, ConnConfig{})
	c := dial(t, srv.addr)
	for v := int16(0); v <= 4; v++ {
		c.SendAs(int32(v), apiVersionsRequest(v))
		resp := kmsg.NewPtrApiVersionsResponse()
		resp.SetVersion(v)
		if corr := c.Recv(resp); corr != int32(v) {
			t.Fatalf("v%d: correlation id %d", v, corr)
		}
		if resp.ErrorCode != 0 || !sameKeys(resp.ApiKeys, f.reg.Versions()) {
			t.Fatalf("v%d: error %d, keys %+v", v, resp.ErrorCode, resp.ApiKeys)
		}
	}
}

func TestApiVersionsTooNew(t *testing.T) {
	f := newFakeBroker(t)
	srv := startServer(t, f.reg, ConnConfig{})
	c := dial(t, srv.addr)
	for i, v := range []int16{5, 127} { // 5 is known to kmsg but not registered
		// A future body the server cannot know: it must not be decoded.
		body := AppendRequestHeader(nil, Header{Key: 18, Version: v, CorrelationID: int32(100 + i)})
		c.SendFrame(append(body, 0xde, 0xad, 0xbe, 0xef))
		resp := kmsg.NewPtrApiVersionsResponse()
		resp.SetVersion(0)
		if corr := c.Recv(resp); corr != int32(100+i) {
			t.Fatalf("v%d: correlation id %d", v, corr)
		}
		// As Kafka does, only ApiVersions' own range is listed.
		own, _ := f.reg.Lookup(18)
		if resp.ErrorCode != kerr.UnsupportedVersion.Code || len(resp.ApiKeys) != 1 || resp.ApiKeys[0].ApiKey != 18 ||
			resp.ApiKeys[0].MinVersion != own.MinVersion || resp.ApiKeys[0].MaxVersion != own.MaxVersion {
			t.Fatalf("v%d: error %d, keys %+v", v, resp.ErrorCode, resp.ApiKeys)
		}
	}
	if n := f.apiVersionsCalls.Load(); n != 0 {
		t.Fatalf("handler called %d times for versions it does not serve", n)
	}
	// The client retries at a version the server has, on the same connection.
	c.SendAs(7, apiVersionsRequest(3))
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.SetVersion(3)
	if corr := c.Recv(resp); corr != 7 || resp.ErrorCode != 0 {
		t.Fatalf("correlation id %d, error %d", corr, resp.ErrorCode)
	}
}

func TestResponsesInRequestOrder(t *testing.T) {
	f := newFakeBroker(t)
	srv := startServer(t, f.reg, ConnConfig{})
	c := dial(t, srv.addr)

	meta := kmsg.NewPtrMetadataRequest()
	meta.SetVersion(12)
	c.SendAs(1, meta)
	c.SendAs(2, apiVersionsRequest(3))
	// The ApiVersions answer is ready while Metadata still waits.
	ktest.Eventually(t, "ApiVersions handled", func() bool { return f.apiVersionsCalls.Load() == 1 })
	close(f.release)

	mresp := kmsg.NewPtrMetadataResponse()
	mresp.SetVersion(12)
	if corr := c.Recv(mresp); corr != 1 {
		t.Fatalf("first response has correlation id %d, want 1", corr)
	}
	aresp := kmsg.NewPtrApiVersionsResponse()
	aresp.SetVersion(3)
	if corr := c.Recv(aresp); corr != 2 {
		t.Fatalf("second response has correlation id %d, want 2", corr)
	}
}

func TestPipelinedManyInOrder(t *testing.T) {
	f := newFakeBroker(t)
	srv := startServer(t, f.reg, ConnConfig{MaxInFlight: 4})
	c := dial(t, srv.addr)
	const n = 500
	var batch []byte
	for i := range int32(n) {
		body := encodeRequest(i, apiVersionsRequest(int16(i%5)))
		batch = binary.BigEndian.AppendUint32(batch, uint32(len(body)))
		batch = append(batch, body...)
	}
	if _, err := c.NetConn().Write(batch); err != nil {
		t.Fatal(err)
	}
	for i := range int32(n) {
		resp := kmsg.NewPtrApiVersionsResponse()
		resp.SetVersion(int16(i % 5))
		if corr := c.Recv(resp); corr != i {
			t.Fatalf("response %d has correlation id %d", i, corr)
		}
	}
}

func TestBackpressure(t *testing.T) {
	f := newFakeBroker(t)
	const maxInFlight = 2
	srv := startServer(t, f.reg, ConnConfig{MaxInFlight: maxInFlight})
	c := dial(t, srv.addr)
	const n = 10
	for i := range int32(n) {
		meta := kmsg.NewPtrMetadataRequest()
		meta.SetVersion(4)
		c.SendAs(i, meta)
	}
	// The reader then waits with one more request decoded but not
	// dispatched.
	ktest.Eventually(t, "queue full", func() bool { return f.metadataCalls.Load() == maxInFlight })
	time.Sleep(50 * time.Millisecond) // nothing to poll for: checks that nothing more happens
	if got := f.metadataCalls.Load(); got != maxInFlight {
		t.Fatalf("%d requests dispatched with %d in flight allowed", got, maxInFlight)
	}
	close(f.release)
	for i := range int32(n) {
		resp := kmsg.NewPtrMetadataResponse()
		resp.SetVersion(4)
		if corr := c.Recv(resp); corr != i {
			t.Fatalf("response %d has correlation id %d", i, corr)
		}
	}
}

func TestRespondNilSendsNothing(t *testing.T) {
	f := newFakeBroker(t)
	srv := startServer(t, f.reg, ConnConfig{})
	c := dial(t, srv.addr)
	for _, v := range []int16{7, 9} { // flexible and not
		produce := kmsg.NewPtrProduceRequest()
		produce.SetVersion(v)
		produce.Acks = 0
		c.SendAs(int32(v), produce)
		c.SendAs(int32(v)+100, apiVersionsRequest(0))
		resp := kmsg.NewPtrApiVersionsResponse()
		resp.SetVersion(0)
		if corr := c.Recv(resp); corr != int32(v)+100 {
			t.Fatalf("produce v%d acks=0: got correlation id %d, want the ApiVersions after it", v, corr)
		}
	}
	produce := kmsg.NewPtrProduceRequest()
	produce.SetVersion(9)
	produce.Acks = -1
	c.SendAs(3, produce)
	presp := kmsg.NewPtrProduceResponse()
	presp.SetVersion(9)
	if corr := c.Recv(presp); corr != 3 {
		t.Fatalf("acks=-1 produce: correlation id %d", corr)
	}
}

func TestCloseConnectionAfterEarlierResponses(t *testing.T) {
	f := newFakeBroker(t)
	srv := startServer(t, f.reg, ConnConfig{})
	c := dial(t, srv.addr)
	meta := kmsg.NewPtrMetadataRequest()
	meta.SetVersion(12)
	c.SendAs(1, meta)
	produce := kmsg.NewPtrProduceRequest()
	produce.SetVersion(9)
	produce.Acks = 0
	produce.Topics = []kmsg.ProduceRequestTopic{{Topic: "fail"}}
	c.SendAs(2, produce)
	c.SendAs(3, apiVersionsRequest(0))
	// The Metadata before the close is still answered once it is ready.
	close(f.release)
	mresp := kmsg.NewPtrMetadataResponse()
	mresp.SetVersion(12)
	if corr := c.Recv(mresp); corr != 1 {
		t.Fatalf("correlation id %d, want the Metadata's", corr)
	}
	c.ExpectClosed()
	if err := srv.serveErr(t); !errors.Is(err, ErrClosedByHandler) {
		t.Fatalf("Serve returned %v", err)
	}
	if n := f.apiVersionsCalls.Load(); n != 0 {
		t.Fatalf("a request behind the close was handled %d times", n)
	}
}

// sendStashed sends a Heartbeat (correlation ID 1), which the fake broker
// does not answer but hands over, and returns its respond function.
func sendStashed(t *testing.T, f *fakeBroker, c *ktest.Conn) func(kmsg.Response) {
	t.Helper()
	hb := kmsg.NewPtrHeartbeatRequest()
	hb.SetVersion(4)
	c.SendAs(1, hb)
	select {
	case respond := <-f.stashed:
		return respond
	case <-time.After(testTimeout):
		t.Fatal("heartbeat not dispatched")
		return nil
	}
}

func TestCloseConnectionLater(t *testing.T) {
	f := newFakeBroker(t)
	srv := startServer(t, f.reg, ConnConfig{})
	c := dial(t, srv.addr)
	respond := sendStashed(t, f, c)
	c.SendAs(2, apiVersionsRequest(0))
	ktest.Eventually(t, "ApiVersions handled", func() bool { return f.apiVersionsCalls.Load() == 1 })
	// A close from another goroutine also drops the ready answer behind it.
	respond(CloseConnection)
	c.ExpectClosed()
	if err := srv.serveErr(t); !errors.Is(err, ErrClosedByHandler) {
		t.Fatalf("Serve returned %v", err)
	}
}

func TestRespondTwiceIgnored(t *testing.T) {
	f := newFakeBroker(t)
	srv := startServer(t, f.reg, ConnConfig{})
	c := dial(t, srv.addr)
	lo := kmsg.NewPtrListOffsetsRequest()
	lo.SetVersion(4)
	c.SendAs(1, lo)
	c.SendAs(2, apiVersionsRequest(1))
	resp := kmsg.NewPtrListOffsetsResponse()
	resp.SetVersion(4)
	if corr := c.Recv(resp); corr != 1 || resp.ThrottleMillis != 1 {
		t.Fatalf("correlation id %d, throttle %d: want the first response", corr, resp.ThrottleMillis)
	}
	aresp := kmsg.NewPtrApiVersionsResponse()
	aresp.SetVersion(1)
	if corr := c.Recv(aresp); corr != 2 {
		t.Fatalf("correlation id %d after a double respond", corr)
	}
}

func TestRespondAfterServeReturned(t *testing.T) {
	f := newFakeBroker(t)
	srv := startServer(t, f.reg, ConnConfig{})
	c := dial(t, srv.addr)
	respond := sendStashed(t, f, c)
	_ = c.NetConn().Close()
	if err := srv.serveErr(t); err != nil {
		t.Fatalf("peer close: Serve returned %v", err)
	}
	respond(kmsg.NewPtrHeartbeatResponse()) // must neither block nor panic
	respond(kmsg.NewPtrHeartbeatResponse())
}

func TestReject(t *testing.T) {
	f := newFakeBroker(t)
	srv := startServer(t, f.reg, ConnConfig{})
	c := dial(t, srv.addr)
	for _, v := range []int16{0, 3} { // below and above [1, 2]; 3 is flexible
		req := kmsg.NewPtrFindCoordinatorRequest()
		req.SetVersion(v)
		req.CoordinatorKey = "group"
		c.SendAs(int32(v), req)
		resp := kmsg.NewPtrFindCoordinatorResponse()
		resp.SetVersion(v)
		if corr := c.Recv(resp); corr != int32(v) || resp.ErrorCode != kerr.UnsupportedVersion.Code {
			t.Fatalf("v%d: correlation id %d, error %d", v, corr, resp.ErrorCode)
		}
	}
	req := kmsg.NewPtrFindCoordinatorRequest()
	req.SetVersion(2)
	c.SendAs(9, req)
	resp := kmsg.NewPtrFindCoordinatorResponse()
	resp.SetVersion(2)
	if corr := c.Recv(resp); corr != 9 || resp.ErrorCode != 0 {
		t.Fatalf("v2: correlation id %d, error %d", corr, resp.ErrorCode)
	}
}

// closes checks that body makes the server close the connection and Serve
// return an error wrapping want, with nothing answered.
func closes(t *testing.T, cfg ConnConfig, want error, frame []byte) {
	t.Helper()
	f := newFakeBroker(t)
	srv := startServer(t, f.reg, cfg)
	c := dial(t, srv.addr)
	if _, err := c.NetConn().Write(frame); err != nil {
		t.Fatal(err)
	}
	c.ReadUntilClosed()
	if err := srv.serveErr(t); !errors.Is(err, want) {
		t.Fatalf("Serve returned %v, want %v", err, want)
	}
}

func framed(body []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

func TestConnectionClosedOnBadInput(t *testing.T) {
	withHeader := func(key, version int16, body ...byte) []byte {
		return framed(append(AppendRequestHeader(nil, Header{Key: key, Version: version, CorrelationID: 1}), body...))
	}
	unregistered := kmsg.NewPtrFetchRequest()
	unregistered.SetVersion(12)
	tooNewMeta := kmsg.NewPtrMetadataRequest()
	tooNewMeta.SetVersion(13)
	tooOldProduce := kmsg.NewPtrProduceRequest()
	tooOldProduce.SetVersion(2)
	for _, tc := range []struct {
		name  string
		cfg   ConnConfig
		want  error
		frame []byte
	}{
		{"unknown key", ConnConfig{}, ErrUnknownAPI, withHeader(9999, 0)},
		{"unregistered key", ConnConfig{}, ErrUnknownAPI, framed(encodeRequest(1, unregistered))},
		{"frame too large", ConnConfig{MaxFrameBytes: 1024}, ErrFrameTooLarge, binary.BigEndian.AppendUint32(nil, 1025)},
		{"frame too large for default", ConnConfig{}, ErrFrameTooLarge, binary.BigEndian.AppendUint32(nil, uint32(DefaultMaxFrameBytes)+1)},
		{"negative size", ConnConfig{}, ErrNegativeSize, binary.BigEndian.AppendUint32(nil, 0xfffffff0)},
		{"empty frame", ConnConfig{}, ErrMalformed, framed(nil)},
		{"short header", ConnConfig{}, ErrMalformed, framed([]byte{0, 18, 0})},
		{"truncated body", ConnConfig{}, ErrMalformed, withHeader(3, 4, 0, 0, 0, 5, 0)},
		{"garbage body", ConnConfig{}, ErrMalformed, withHeader(0, 9, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x0f)},
		{"version above range without Reject", ConnConfig{}, ErrUnsupportedVersion, framed(encodeRequest(1, tooNewMeta))},
		{"version below range without Reject", ConnConfig{}, ErrUnsupportedVersion, framed(encodeRequest(1, tooOldProduce))},
		{"version above kmsg with Reject", ConnConfig{}, ErrUnsupportedVersion, withHeader(10, 100, 0, 0)},
		{"negative version", ConnConfig{}, ErrUnsupportedVersion, withHeader(18, -1)},
		{"garbage body on Reject path", ConnConfig{}, ErrMalformed, withHeader(10, 0, 0x7f, 0x7f)},
	} {
		t.Run(tc.name, func(t *testing.T) { closes(t, tc.cfg, tc.want, tc.frame) })
	}
}

func TestUnknownKeyAfterPipelinedRequests(t *testing.T) {
	// Requests before the bad one may or may not be answered, but the bad
	// one closes the connection rather than be skipped.
	f := newFakeBroker(t)
	srv := startServer(t, f.reg, ConnConfig{})
	c := dial(t, srv.addr)
	c.SendAs(1, apiVersionsRequest(0))
	c.SendFrame(AppendRequestHeader(nil, Header{Key: 9999, CorrelationID: 2}))
	c.ReadUntilClosed()
	if err := srv.serveErr(t); !errors.Is(err, ErrUnknownAPI) {
		t.Fatalf("Serve returned %v", err)
	}
}

func TestWrongResponseClosesConnection(t *testing.T) {
	f := newFakeBroker(t)
	srv := startServer(t, f.reg, ConnConfig{})
	c := dial(t, srv.addr)
	jg := kmsg.NewPtrJoinGroupRequest()
	jg.SetVersion(5)
	c.SendAs(1, jg)
	c.ReadUntilClosed()
	if err := srv.serveErr(t); !errors.Is(err, ErrBadResponse) {
		t.Fatalf("Serve returned %v", err)
	}
}

func TestMaxInFlightOne(t *testing.T) {
	f := newFakeBroker(t)
	srv := startServer(t, f.reg, ConnConfig{MaxInFlight: 1})
	c := dial(t, srv.addr)
	for i := range int32(20) {
		c.SendAs(i, apiVersionsRequest(1))
	}
	for i := range int32(20) {
		resp := kmsg.NewPtrApiVersionsResponse()
		resp.SetVersion(1)
		if corr := c.Recv(resp); corr != i {
			t.Fatalf("response %d has correlation id %d", i, corr)
		}
	}
}

func TestPeerCloseReturnsNil(t *testing.T) {
	f := newFakeBroker(t)
	srv := startServer(t, f.reg, ConnConfig{})
	c := dial(t, srv.addr)
	c.SendAs(1, apiVersionsRequest(2))
	resp := kmsg.NewPtrApiVersionsResponse()
	resp.SetVersion(2)
	c.Recv(resp)
	_ = c.NetConn().Close()
	if err := srv.serveErr(t); err != nil {
		t.Fatalf("Serve returned %v", err)
	}
}

func TestCancelStopsServe(t *testing.T) {
	f := newFakeBroker(t)
	a, b := net.Pipe()
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- Serve(ctx, a, f.reg, ConnConfig{}) }()

	// A Metadata request whose handler waits: cancelling must end it too.
	meta := kmsg.NewPtrMetadataRequest()
	meta.SetVersion(1)
	go func() { _, _ = b.Write(framed(encodeRequest(1, meta))) }()
	ktest.Eventually(t, "Metadata dispatched", func() bool { return f.metadataCalls.Load() == 1 })

	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Serve returned %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Serve did not return after cancel")
	}
	// Serve closed its end.
	if _, err := b.Read(make([]byte, 1)); err == nil {
		t.Fatal("connection still open")
	}
}

func TestCancelWhileWriterBlocked(t *testing.T) {
	// The peer never reads, so the writer blocks in Write; cancel must
	// still end Serve.
	f := newFakeBroker(t)
	a, b := net.Pipe()
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- Serve(ctx, a, f.reg, ConnConfig{}) }()
	go func() { _, _ = b.Write(framed(encodeRequest(1, apiVersionsRequest(0)))) }()
	ktest.Eventually(t, "ApiVersions handled", func() bool { return f.apiVersionsCalls.Load() == 1 })
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Serve returned %v", err)
		}
	case <-time.After(testTimeout):
		t.Fatal("Serve did not return after cancel")
	}
}

func TestCancelledBeforeServe(t *testing.T) {
	f := newFakeBroker(t)
	a, b := net.Pipe()
	defer b.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Serve(ctx, a, f.reg, ConnConfig{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Serve returned %v", err)
	}
}

func TestParseRequest(t *testing.T) {
	f := newFakeBroker(t)
	id := "me"
	meta := kmsg.NewPtrMetadataRequest()
	meta.SetVersion(10)
	topic := kmsg.NewMetadataRequestTopic()
	name := "t1"
	topic.Topic = &name
	meta.Topics = append(meta.Topics, topic)
	body := meta.AppendTo(AppendRequestHeader(nil, Header{Key: 3, Version: 10, CorrelationID: 5, ClientID: &id}))
	req, reply, err := ParseRequest(f.reg, body)
	if err != nil || reply != nil {
		t.Fatalf("err %v, reply %v", err, reply)
	}
	got, ok := req.Msg.(*kmsg.MetadataRequest)
	if !ok || got.GetVersion() != 10 || len(got.Topics) != 1 || *got.Topics[0].Topic != "t1" {
		t.Fatalf("decoded %+v", req.Msg)
	}
	if req.Key != 3 || req.Version != 10 || req.CorrelationID != 5 || *req.ClientID != "me" {
		t.Fatalf("request %+v", req)
	}
}

// TestIdleTimeout closes connections on which no request begins in time,
// also one that stalls inside a frame, while an active one stays open.
func TestIdleTimeout(t *testing.T) {
	f := newFakeBroker(t)
	srv := startServer(t, f.reg, ConnConfig{IdleTimeout: 200 * time.Millisecond})
	silent := dial(t, srv.addr)
	silent.ReadUntilClosed()

	stalled := dial(t, srv.addr)
	if _, err := stalled.NetConn().Write([]byte{0, 0, 0, 50, 0, 18}); err != nil {
		t.Fatal(err)
	}
	stalled.ReadUntilClosed()

	active := dial(t, srv.addr)
	for i := 0; i < 5; i++ {
		active.SendAs(int32(i), apiVersionsRequest(3))
		resp := kmsg.NewPtrApiVersionsResponse()
		resp.SetVersion(3)
		if corr := active.Recv(resp); corr != int32(i) || resp.ErrorCode != 0 {
			t.Fatalf("request %d: correlation %d, error %d", i, corr, resp.ErrorCode)
		}
		time.Sleep(100 * time.Millisecond) // within the idle timeout
	}
}
