# seal: SEAL in C. `make` builds ./seal, `make test` runs the Check suite on
# both matmul paths (OpenBLAS and the plain-loop reference), `make bench` runs
# the CPU benchmarks beside PyTorch.
CC      ?= gcc
CFLAGS  ?= -O3 -march=native
CFLAGS  += -D_GNU_SOURCE -std=c11 -Wall -Wextra -fopenmp -I.
LDLIBS  := -lcjson -lpcre2-8 -lm
PYTHON  ?= /usr/bin/python3
BLAS    ?= 1

SRC := util.c safetensors.c model.c train.c verify.c generate.c tokenizer.c run.c restem.c arc.c fewshot.c demo_tasks.c demo.c
TEST_SRC := test/test_main.c test/test_model.c test/test_io.c test/test_tokenizer.c test/test_arc.c test/test_demo.c test/test_restem.c

ifeq ($(BLAS),1)
VARIANT := blas
VFLAGS  := -DUSE_BLAS
VLIBS   := -lopenblas
else
VARIANT := ref
endif

all: seal

seal: seal.c $(SRC) $(wildcard *.h)
	$(CC) $(CFLAGS) $(VFLAGS) -o $@ seal.c $(SRC) $(LDLIBS) $(VLIBS)

build/test-blas: $(SRC) $(TEST_SRC) $(wildcard *.h test/*.h)
	@mkdir -p build
	$(CC) $(CFLAGS) -DUSE_BLAS -o $@ $(SRC) $(TEST_SRC) $(LDLIBS) -lopenblas $(shell pkg-config --libs check)

build/test-ref: $(SRC) $(TEST_SRC) $(wildcard *.h test/*.h)
	@mkdir -p build
	$(CC) $(CFLAGS) -o $@ $(SRC) $(TEST_SRC) $(LDLIBS) $(shell pkg-config --libs check)

test: seal build/test-blas build/test-ref
	@echo "== Check suite, OpenBLAS matmuls" && ./build/test-blas
	@echo "== Check suite, reference-loop matmuls" && ./build/test-ref
	@echo "== command line: seal demo --quick, run directories, bad input" && test/cli.sh
	@echo "== seal fewshot killed with SIGKILL and resumed, against an uninterrupted run" && test/kill_resume.sh

# CPU benchmarks beside PyTorch: bench/run.sh prints the table and writes
# bench-results.json. Always the OpenBLAS build.
build/bench_train: bench/bench_train.c $(SRC) $(wildcard *.h)
	@mkdir -p build
	$(CC) $(CFLAGS) -DUSE_BLAS -o $@ bench/bench_train.c $(SRC) $(LDLIBS) -lopenblas
build/bench_train: bench/bench_models.h

build/bench_infer: bench/bench_infer.c bench/bench_models.h $(SRC) $(wildcard *.h)
	@mkdir -p build
	$(CC) $(CFLAGS) -DUSE_BLAS -o $@ bench/bench_infer.c $(SRC) $(LDLIBS) -lopenblas

bench: build/bench_train build/bench_infer
	PYTHON=$(PYTHON) bench/run.sh build/bench_train bench-results.json

# Regenerate the committed fixtures (needs PyTorch: Debian's python3-torch).
fixtures:
	$(PYTHON) test/reference.py test/fixtures

clean:
	rm -rf seal build

.PHONY: all test bench fixtures clean
