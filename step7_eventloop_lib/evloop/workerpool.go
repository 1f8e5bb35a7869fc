package evloop

import (
	"context"
	"sync"
)

// workerPool runs blocking or CPU-heavy jobs on a fixed set of goroutines,
// so that an event loop never has to: the loop submits, goes back to
// epoll_wait, and hears about the result through its task queue. It is
// libuv's thread pool (four threads by default there) in Go form; a fixed
// number of workers and a bounded queue keep a flood of slow requests from
// turning into a flood of goroutines.
type workerPool struct {
	jobs   chan func(context.Context)
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu      sync.RWMutex
	stopped bool
}

func newWorkerPool(workers, queue int) *workerPool {
	p := &workerPool{jobs: make(chan func(context.Context), queue)}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	for range workers {
		p.wg.Go(func() {
			for job := range p.jobs {
				job(p.ctx)
			}
		})
	}
	return p
}

// submit queues job without ever blocking the caller: a loop that waited
// for a free worker would stall exactly as if it did the work itself.
func (p *workerPool) submit(job func(context.Context)) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.stopped {
		return ErrEngineStopped
	}
	select {
	case p.jobs <- job:
		return nil
	default:
		return ErrPoolFull
	}
}

// stop cancels the jobs' context, lets queued jobs see it, and waits for
// every worker to return.
func (p *workerPool) stop() {
	p.mu.Lock()
	p.stopped = true
	p.mu.Unlock()
	p.cancel()
	close(p.jobs)
	p.wg.Wait()
}
