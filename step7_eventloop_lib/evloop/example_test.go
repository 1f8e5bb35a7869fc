package evloop_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"time"

	"concurrent-servers-go/step7_eventloop_lib/evloop"
)

// echoServer greets each client and sends every byte back.
type echoServer struct {
	evloop.BuiltinHandler
	up chan string // the address, once bound
}

func (s *echoServer) OnBoot(eng *evloop.Engine) evloop.Action {
	s.up <- eng.Addr().String()
	return evloop.None
}

func (s *echoServer) OnOpen(c *evloop.Conn) ([]byte, evloop.Action) {
	return []byte("hello\n"), evloop.None
}

func (s *echoServer) OnTraffic(c *evloop.Conn) evloop.Action {
	in, _ := c.Next(-1) // valid until OnTraffic returns; Write copies what it keeps
	c.Write(in)
	return evloop.None
}

// A whole server is a handler and one call to Run, which serves until its
// context ends.
func Example() {
	ctx, stop := context.WithCancel(context.Background())
	s := &echoServer{up: make(chan string, 1)}
	done := make(chan error)
	go func() { done <- evloop.Run(ctx, s, "127.0.0.1", 0, evloop.WithLoops(2)) }()

	c, _ := net.Dial("tcp", <-s.up)
	r := bufio.NewReader(c)
	greeting, _ := r.ReadString('\n')
	fmt.Fprint(c, "ping\n")
	echo, _ := r.ReadString('\n')
	fmt.Printf("%q %q\n", greeting, echo)
	c.Close()

	stop()
	fmt.Println("Run returned", <-done)
	// Output:
	// "hello\n" "ping\n"
	// Run returned <nil>
}

// lineServer answers complete lines only: Peek looks for the newline
// without consuming, and a partial line simply stays in the connection's
// buffer until the rest arrives.
type lineServer struct {
	evloop.BuiltinHandler
	up chan string
}

func (s *lineServer) OnBoot(eng *evloop.Engine) evloop.Action {
	s.up <- eng.Addr().String()
	return evloop.None
}

func (s *lineServer) OnTraffic(c *evloop.Conn) evloop.Action {
	for {
		buf, _ := c.Peek(-1)
		i := bytes.IndexByte(buf, '\n')
		if i < 0 {
			return evloop.None
		}
		line, _ := c.Next(i + 1)
		c.Write(append([]byte("got "), line...))
	}
}

func ExampleConn_Peek() {
	ctx, stop := context.WithCancel(context.Background())
	s := &lineServer{up: make(chan string, 1)}
	done := make(chan error)
	go func() { done <- evloop.Run(ctx, s, "127.0.0.1", 0, evloop.WithLoops(1)) }()
	defer func() { stop(); <-done }()

	c, _ := net.Dial("tcp", <-s.up)
	defer c.Close()
	fmt.Fprint(c, "one\ntw")
	time.Sleep(20 * time.Millisecond) // "tw" waits in the buffer meanwhile
	fmt.Fprint(c, "o\n")
	r := bufio.NewReader(c)
	for range 2 {
		line, _ := r.ReadString('\n')
		fmt.Print(line)
	}
	// Output:
	// got one
	// got two
}

// squareServer does its "slow" work in the worker pool and writes the
// result from done, back on the loop.
type squareServer struct {
	evloop.BuiltinHandler
	up chan string
}

func (s *squareServer) OnBoot(eng *evloop.Engine) evloop.Action {
	s.up <- eng.Addr().String()
	return evloop.None
}

func (s *squareServer) OnTraffic(c *evloop.Conn) evloop.Action {
	in, _ := c.Next(-1)
	for _, b := range in {
		n := int(b - '0')
		var sq int
		c.QueueWork(
			func(context.Context) { time.Sleep(10 * time.Millisecond); sq = n * n }, // on a worker
			func(c *evloop.Conn) { fmt.Fprintf(writer{c}, "%d\n", sq) },             // on the loop
		)
	}
	return evloop.None
}

// writer lets fmt write to a Conn on its loop.
type writer struct{ c *evloop.Conn }

func (w writer) Write(p []byte) (int, error) { return w.c.Write(p) }

func ExampleConn_QueueWork() {
	ctx, stop := context.WithCancel(context.Background())
	s := &squareServer{up: make(chan string, 1)}
	done := make(chan error)
	go func() { done <- evloop.Run(ctx, s, "127.0.0.1", 0, evloop.WithWorkers(1, 16)) }()
	defer func() { stop(); <-done }()

	c, _ := net.Dial("tcp", <-s.up)
	defer c.Close()
	fmt.Fprint(c, "7")
	answer, _ := bufio.NewReader(c).ReadString('\n')
	fmt.Print(answer)
	// Output: 49
}
