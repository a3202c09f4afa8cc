"""Many workers, one run: claims, global counts, the shared proposal pool and duplicate set on Redis.

`RedisCoordination` implements `engine/coordination.Coordination`; `layout` says where each
worker writes under the run root.
"""

from agen.coord.layout import is_run_root, worker_dir, worker_dirs
from agen.coord.redis_coordination import CoordinatorUnreachableError, RedisCoordination

__all__ = ["CoordinatorUnreachableError", "RedisCoordination", "is_run_root", "worker_dir", "worker_dirs"]
