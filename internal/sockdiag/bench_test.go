package sockdiag

import (
	"context"
	"net"
	"strconv"
	"testing"
)

// BenchmarkDump measures one dump (both families, tcp_info included) with
// n extra loopback connections open (each is two sockets plus the listener).
func BenchmarkDump(b *testing.B) {
	for _, n := range []int{10, 500} {
		b.Run(strconv.Itoa(n)+"conns", func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			var conns []net.Conn
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					conns = append(conns, c)
				}
			}()
			var clients []net.Conn
			for range n {
				c, err := net.Dial("tcp", ln.Addr().String())
				if err != nil {
					b.Fatal(err)
				}
				clients = append(clients, c)
			}
			defer func() {
				for _, c := range clients {
					c.Close()
				}
			}()
			b.ReportAllocs()
			b.ResetTimer()
			var got int
			for b.Loop() {
				ss, err := Dump(context.Background(), AllStates, true)
				if err != nil {
					b.Fatal(err)
				}
				got = len(ss)
			}
			b.ReportMetric(float64(got), "sockets")
		})
	}
}
