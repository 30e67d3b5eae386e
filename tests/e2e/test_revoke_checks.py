"""A revoke says the rest of the truth: an organization share may keep an account able to
launch the image, and with a destination role each destination is asked whether it still can."""

from __future__ import annotations

from app.sandbox import seed
from tests.conftest import REGION, Service, new_account_ids
from tests.e2e.test_revoke import ORG_ARN, run_job


async def test_a_revoke_verifies_from_the_destination_that_the_image_is_gone(
    service: Service,
) -> None:
    key = seed.create_customer_key(service.double.url)
    image = seed.create_encrypted_image(service.double.url, key.key_id)
    gone, visible = new_account_ids(2)
    await run_job(service, image_id=image.image_id, account_ids=[gone, visible])
    # Someone made the image public by hand: every account still sees it.
    public = {"Add": [{"Group": "all"}]}

    seed.ec2_client(service.double.url, REGION).modify_image_attribute(
        ImageId=image.image_id, LaunchPermission=public
    )
    only_visible = await run_job(
        service, action="revoke", image_id=image.image_id, account_ids=[visible]
    )

    assert only_visible["status"] == "failed", only_visible
    [target] = await service.targets(only_visible["id"])
    assert (target["step"], target["error"]["code"]) == ("verify", "StillVisibleInDestination")

    seed.ec2_client(service.double.url, REGION).modify_image_attribute(
        ImageId=image.image_id, LaunchPermission={"Remove": [{"Group": "all"}]}
    )
    revoked = await run_job(service, action="revoke", image_id=image.image_id, account_ids=[gone])

    assert revoked["status"] == "succeeded", revoked
    assert revoked["verify"] is True


async def test_revoking_an_account_notes_the_organization_share_that_remains(
    service: Service,
) -> None:
    key = seed.create_customer_key(service.double.url)
    image = seed.create_encrypted_image(service.double.url, key.key_id)
    [account] = new_account_ids(1)
    await run_job(
        service, image_id=image.image_id, account_ids=[account], organization_arns=[ORG_ARN]
    )

    revoked = await run_job(
        service, action="revoke", image_id=image.image_id, account_ids=[account]
    )

    assert revoked["status"] == "succeeded", revoked
    [target] = await service.targets(revoked["id"])
    assert ORG_ARN in (target["note"] or "")
    assert "stays launchable" in target["note"]
