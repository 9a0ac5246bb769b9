// Package ktest is what tests share to talk to a broker: a raw Kafka
// protocol connection that controls every byte it sends, and polling for a
// condition instead of sleeping. It imports nothing from PubG1, so that the
// tests of every package, kproto's included, can use it.
package ktest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kmsg"
)

// DefaultTimeout bounds each network wait of a Conn's failing methods.
const DefaultTimeout = 10 * time.Second

// maxResponseBytes is the largest response frame a Conn accepts.
const maxResponseBytes = 64 << 20

// ErrNoAnswer (wrapped) means nothing arrived within the timeout; the
// connection is intact and the answer may still be read.
var ErrNoAnswer = errors.New("ktest: no answer")

// Conn is a raw Kafka client connection: it frames requests and writes
// their headers itself, sends each request at exactly the version set on it
// (which kgo.Client does not), and decodes each response at that version.
//
// Its methods come in two kinds. Those returning an error suit probes of
// brokers that may die or freeze under them; the others, available on
// connections from Dial, fail the test instead.
type Conn struct {
	// ClientID is the client ID of every request header.
	ClientID string
	// Exact makes decoding fail unless the response re-encodes to exactly
	// the bytes received, so that a response encoded at the wrong version
	// does not slip through.
	Exact bool
	// Timeout bounds each network wait of the failing methods.
	Timeout time.Duration

	t    testing.TB
	nc   net.Conn
	corr int32 // of the last request sent
}

// Dial connects to addr and closes the connection when the test ends; the
// test fails if it cannot connect.
func Dial(t testing.TB, addr string) *Conn {
	t.Helper()
	c, err := Connect(addr, DefaultTimeout)
	if err != nil {
		t.Fatalf("dialing %s: %v", addr, err)
	}
	c.t = t
	t.Cleanup(func() { _ = c.nc.Close() })
	return c
}

// Connect connects to addr, waiting at most timeout. Only the methods that
// return errors may be used on the connection, and the caller closes it.
func Connect(addr string, timeout time.Duration) (*Conn, error) {
	nc, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return nil, err
	}
	return &Conn{ClientID: "pubg1-test", Timeout: DefaultTimeout, nc: nc}, nil
}

// NetConn is the underlying connection.
func (c *Conn) NetConn() net.Conn { return c.nc }

// Close closes the connection.
func (c *Conn) Close() error { return c.nc.Close() }

// AppendRequestHeader appends a request header: v2 (with an empty tagged
// field section) for flexible requests, v1 otherwise.
func AppendRequestHeader(dst []byte, key, version int16, corr int32, clientID string, flexible bool) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(key))
	dst = binary.BigEndian.AppendUint16(dst, uint16(version))
	dst = binary.BigEndian.AppendUint32(dst, uint32(corr))
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(clientID)))
	dst = append(dst, clientID...)
	if flexible {
		dst = append(dst, 0)
	}
	return dst
}

// Frame prefixes body with its size.
func Frame(body []byte) []byte {
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

// AppendRequest appends req, whose version must be set, with its header and
// correlation id corr: a request frame without its size prefix.
func (c *Conn) AppendRequest(dst []byte, corr int32, req kmsg.Request) []byte {
	dst = AppendRequestHeader(dst, req.Key(), req.GetVersion(), corr, c.ClientID, req.IsFlexible())
	return req.AppendTo(dst)
}

// WriteRequest sends req, whose version must be set, with the next
// correlation id, and returns that id.
func (c *Conn) WriteRequest(req kmsg.Request) (int32, error) {
	c.corr++
	return c.corr, c.WriteBytes(Frame(c.AppendRequest(nil, c.corr, req)))
}

// WriteBytes sends b as it is.
func (c *Conn) WriteBytes(b []byte) error {
	if err := c.nc.SetWriteDeadline(time.Now().Add(c.Timeout)); err != nil {
		return err
	}
	_, err := c.nc.Write(b)
	return err
}

// ReadFrame reads one response frame, waiting at most timeout for it to
// begin, and splits off the correlation id. ErrNoAnswer (wrapped) means
// nothing arrived in time and ReadFrame may be called again.
func (c *Conn) ReadFrame(timeout time.Duration) (int32, []byte, error) {
	if err := c.nc.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return 0, nil, err
	}
	var size [4]byte
	if n, err := io.ReadFull(c.nc, size[:]); err != nil {
		var ne net.Error
		if n == 0 && errors.As(err, &ne) && ne.Timeout() {
			return 0, nil, fmt.Errorf("%w within %v", ErrNoAnswer, timeout)
		}
		return 0, nil, fmt.Errorf("reading response size: %w", err)
	}
	n := binary.BigEndian.Uint32(size[:])
	if n < 4 || n > maxResponseBytes {
		return 0, nil, fmt.Errorf("response frame of %d bytes", n)
	}
	body := make([]byte, n)
	if err := c.nc.SetReadDeadline(time.Now().Add(c.Timeout)); err != nil {
		return 0, nil, err
	}
	if _, err := io.ReadFull(c.nc, body); err != nil {
		return 0, nil, fmt.Errorf("reading %d-byte response: %w", n, err)
	}
	return int32(binary.BigEndian.Uint32(body)), body[4:], nil
}

// ReadResponse reads the response to request corr into resp, whose version
// must be set, waiting at most timeout for it to begin.
func (c *Conn) ReadResponse(resp kmsg.Response, corr int32, timeout time.Duration) error {
	got, body, err := c.ReadFrame(timeout)
	if err != nil {
		return err
	}
	if got != corr {
		return fmt.Errorf("response has correlation id %d, want %d", got, corr)
	}
	return c.Decode(body, resp)
}

// Await reads the response to req, sent with correlation id corr, decoded
// at the request's version, waiting at most timeout for it to begin. After
// ErrNoAnswer it may be called again.
func (c *Conn) Await(req kmsg.Request, corr int32, timeout time.Duration) (kmsg.Response, error) {
	resp := req.ResponseKind()
	resp.SetVersion(req.GetVersion())
	if err := c.ReadResponse(resp, corr, timeout); err != nil {
		return nil, err
	}
	return resp, nil
}

// RoundTrip sends req and reads its response, decoded at the request's
// version, waiting at most timeout for it.
func (c *Conn) RoundTrip(req kmsg.Request, timeout time.Duration) (kmsg.Response, error) {
	corr, err := c.WriteRequest(req)
	if err != nil {
		return nil, err
	}
	return c.Await(req, corr, timeout)
}

// DecodeResponse parses a response body (what follows the correlation id)
// into resp, whose version must be set. ApiVersions always answers with
// header v0; other flexible responses have a tagged field section first.
func DecodeResponse(body []byte, resp kmsg.Response) error {
	return decodeResponse(body, resp, false)
}

// Decode is DecodeResponse, and with Exact set also checks that resp
// re-encodes to body.
func (c *Conn) Decode(body []byte, resp kmsg.Response) error {
	return decodeResponse(body, resp, c.Exact)
}

func decodeResponse(body []byte, resp kmsg.Response, exact bool) error {
	name := fmt.Sprintf("%s v%d", kmsg.NameForKey(resp.Key()), resp.GetVersion())
	if resp.Key() != kmsg.ApiVersions.Int16() && resp.IsFlexible() {
		var err error
		if body, err = skipTaggedFields(body); err != nil {
			return fmt.Errorf("%s: response header: %w", name, err)
		}
	}
	if err := resp.ReadFrom(body); err != nil {
		return fmt.Errorf("decoding %s: %w", name, err)
	}
	if exact {
		if again := resp.AppendTo(nil); !bytes.Equal(again, body) {
			return fmt.Errorf("%s: %d response bytes re-encode to %d different bytes", name, len(body), len(again))
		}
	}
	return nil
}

func skipTaggedFields(b []byte) ([]byte, error) {
	n, used := binary.Uvarint(b)
	if used <= 0 {
		return nil, errors.New("bad tagged field count")
	}
	b = b[used:]
	for range n {
		if _, used = binary.Uvarint(b); used <= 0 {
			return nil, errors.New("bad tag")
		}
		b = b[used:]
		size, used := binary.Uvarint(b)
		if used <= 0 || size > uint64(len(b)-used) {
			return nil, errors.New("bad tagged field size")
		}
		b = b[used+int(size):]
	}
	return b, nil
}

// The methods below fail the test; they need a connection from Dial.

// Send writes req, whose version must be set, and returns its correlation
// id.
func (c *Conn) Send(req kmsg.Request) int32 {
	c.t.Helper()
	corr, err := c.WriteRequest(req)
	if err != nil {
		c.t.Fatalf("writing %s v%d: %v", kmsg.NameForKey(req.Key()), req.GetVersion(), err)
	}
	return corr
}

// SendAs writes req with correlation id corr, whatever ids came before.
func (c *Conn) SendAs(corr int32, req kmsg.Request) {
	c.t.Helper()
	c.SendFrame(c.AppendRequest(nil, corr, req))
}

// SendFrame writes body as one frame.
func (c *Conn) SendFrame(body []byte) {
	c.t.Helper()
	c.Write(Frame(body))
}

// Write sends b as it is.
func (c *Conn) Write(b []byte) {
	c.t.Helper()
	if err := c.WriteBytes(b); err != nil {
		c.t.Fatalf("writing %d bytes: %v", len(b), err)
	}
}

// Next reads the next response frame and returns its correlation id and
// what follows it.
func (c *Conn) Next() (int32, []byte) {
	c.t.Helper()
	corr, body, err := c.ReadFrame(c.Timeout)
	if err != nil {
		c.t.Fatal(err)
	}
	return corr, body
}

// Recv reads the next response into resp, whose version must be set, and
// returns its correlation id.
func (c *Conn) Recv(resp kmsg.Response) int32 {
	c.t.Helper()
	corr, body := c.Next()
	if err := c.Decode(body, resp); err != nil {
		c.t.Fatal(err)
	}
	return corr
}

// Receive reads the response to request corr into resp, whose version must
// be set, waiting at most timeout for it.
func (c *Conn) Receive(resp kmsg.Response, corr int32, timeout time.Duration) {
	c.t.Helper()
	if err := c.ReadResponse(resp, corr, timeout); err != nil {
		c.t.Fatal(err)
	}
}

// Do sends req and returns its response, decoded at the request's version.
func (c *Conn) Do(req kmsg.Request) kmsg.Response {
	c.t.Helper()
	resp, err := c.RoundTrip(req, c.Timeout)
	if err != nil {
		c.t.Fatalf("%s v%d: %v", kmsg.NameForKey(req.Key()), req.GetVersion(), err)
	}
	return resp
}

// ReadUntilClosed waits for the peer to close the connection and returns
// what arrived before; the test fails if it stays open for Timeout.
func (c *Conn) ReadUntilClosed() []byte {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(c.Timeout))
	rest, err := io.ReadAll(c.nc)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.t.Fatalf("connection still open after %v", c.Timeout)
	}
	return rest // after io.EOF or a reset: closed
}

// ExpectClosed checks that the peer closes the connection without sending
// anything more.
func (c *Conn) ExpectClosed() {
	c.t.Helper()
	if rest := c.ReadUntilClosed(); len(rest) > 0 {
		c.t.Fatalf("%d bytes arrived instead of the connection closing: % x", len(rest), rest[:min(len(rest), 64)])
	}
}

// ExpectNoResponse checks that nothing arrives within d and the connection
// stays open.
func (c *Conn) ExpectNoResponse(d time.Duration) {
	c.t.Helper()
	_ = c.nc.SetReadDeadline(time.Now().Add(d))
	var one [1]byte
	n, err := c.nc.Read(one[:])
	if n > 0 || err == nil {
		c.t.Fatal("got a response where none was expected")
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		c.t.Fatalf("connection failed instead of staying silent: %v", err)
	}
}
