from tests.support import Directory


def test_create_and_read_project_credit(directory: Directory) -> None:
    org = directory.customer("Org")
    project = directory.project(org, "A")
    directory.customer_credit(org, "1000")
    credit = directory.project_credit(project, "300")
    assert credit["value"] == "300.00000"
    assert credit["customer_credit"] == "1000.00000"
    listed = directory.client.simulate_get("/api/project-credits/", headers=directory.staff)
    assert listed.headers["X-Result-Count"] == "1"
    assert listed.json[0]["uuid"] == credit["uuid"]
