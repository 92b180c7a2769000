"""session token; user names and emails in lower case

Revision ID: 0e705601b534
Revises: 382fe407b535
Create Date: 2026-12-01 19:50:11.667946

Adds ``user.session_token`` (what cookies name a user by; a new value
revokes them), filled with a random value for every existing user: their
old cookies stop working once, which is the point.

Stores user names and email addresses in lower case, as the app now does
on every write. A row whose lower-case name or email another row already
has is left as it is (and logged): the older account keeps the name.
"""
import logging
import secrets

import sqlalchemy as sa
from alembic import op

# revision identifiers, used by Alembic.
revision = '0e705601b534'
down_revision = '382fe407b535'
branch_labels = None
depends_on = None

log = logging.getLogger('alembic.runtime.migration')

user = sa.table(
    'user',
    sa.column('id', sa.Integer()),
    sa.column('username', sa.String()),
    sa.column('email', sa.String()),
    sa.column('session_token', sa.String()),
)


def upgrade():
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.add_column(sa.Column('session_token', sa.String(length=64), nullable=True))

    connection = op.get_bind()
    rows = connection.execute(sa.select(user.c.id, user.c.username, user.c.email).order_by(user.c.id)).all()
    taken: dict[str, set[str]] = {'username': set(), 'email': set()}
    for row in rows:
        taken['username'].add(row.username)
        taken['email'].add(row.email)
    for row in rows:
        values = {'session_token': secrets.token_urlsafe(32)}
        for column in ('username', 'email'):
            current = getattr(row, column)
            lowered = current.lower()
            if lowered == current:
                continue
            if lowered in taken[column]:
                log.warning('user %d: %s %r kept, %r belongs to another user', row.id, column, current, lowered)
                continue
            taken[column].discard(current)
            taken[column].add(lowered)
            values[column] = lowered
        connection.execute(sa.update(user).where(user.c.id == row.id).values(**values))

    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.alter_column('session_token', existing_type=sa.String(length=64), nullable=False)
        batch_op.create_index(batch_op.f('ix_user_session_token'), ['session_token'], unique=True)


def downgrade():
    with op.batch_alter_table('user', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_user_session_token'))
        batch_op.drop_column('session_token')
