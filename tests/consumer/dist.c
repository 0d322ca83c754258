/* A program outside the tree that uses installed chainrule's MPI part
 * (pkg-config chainrule-mpi): the shards of a batch of 10 rows over 3 ranks. */
#include <stdio.h>

#include <chainrule/dist.h>

int main(void)
{
    int64_t begin = 0, count = 0, next = 0;
    for (int rank = 0; rank < 3; rank++) {
        if (nn_dist_shard(10, rank, 3, &begin, &count) != 0 || begin != next)
            return 1;
        printf("rank %d: rows %lld..%lld\n", rank, (long long)begin, (long long)(begin + count));
        next = begin + count;
    }
    return next == 10 ? 0 : 1;
}
